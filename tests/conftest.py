"""Fixtures shared by the tests: a test merchant, its WeChat-side encoder, a real store; the
router's processes (stopped after the test) and the example plugin package, installed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from arrears_router.config import MerchantConfig
from arrears_router.store import Store, open_store
from arrears_router.wire.intake import Intake
from arrears_router.wire.merchants import MerchantBook
from arrears_router.wire.notifier import Notifier
from arrears_router.wire.signature import SignType
from tests.harness import PYTHON_M, RouterProcess, install_packages, postgres_schema

SIGN_KEY = "192006250b4c09247ec02edce69f6a2d"
AES_KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "tests" / "example_plugin"
"""A third-party plugin package, as a stranger would publish one."""


def pytest_configure() -> None:
    # The router's processes import the tests' own plugins (`use = "tests.sample_plugins:..."`)
    # from the repository, as an operator's would come from PYTHONPATH or an installed package.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def merchant() -> MerchantConfig:
    return MerchantConfig(
        appid="wxtest0000000001",
        mch_id="1900000109",
        sign_key=SIGN_KEY,
        aes_key=f"hex:{AES_KEY_HEX}",
        sign_types=(SignType.HMAC_SHA256, SignType.MD5),
    )


@pytest.fixture
def notifier(merchant: MerchantConfig) -> Notifier:
    return Notifier(merchant)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty store of each backend: a SQLite file, or a schema of its own in the
    PostgreSQL that ``$ARREARS_ROUTER_TEST_POSTGRES`` names (skipped where it is unset)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        with postgres_schema() as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """Every backend the store contract is proven against."""
    opened = open_store(store_url)
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def intake(merchant: MerchantConfig, store: Store) -> Intake:
    return Intake(MerchantBook.from_config([merchant]), store)


@pytest.fixture
def start_process() -> Iterator[Callable[..., RouterProcess]]:
    """``start_process(config, "serve", "--port", "0", ...)``: a :class:`RouterProcess`,
    started; every one is stopped at the end of the test."""
    started: list[RouterProcess] = []

    def start(config: Path, *args: str, cwd: Path | None = None,
              env: Mapping[str, str] | None = None,
              program: Sequence[str] = PYTHON_M) -> RouterProcess:
        process = RouterProcess(config, *args, cwd=cwd, env=env, program=program)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.close()


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder the example plugin package is pip-installed into (offline), once a run: on
    a child's path with ``python_path(example_site)``, on the tests' with ``syspath_prepend``.
    """
    return install_packages(tmp_path_factory.mktemp("example-site"), EXAMPLE_PLUGIN)
