"""The routers the bench measures: a workspace and a store for each, a config naming them,
and one or several ``serve`` processes started on it.

Every router of a run shares one merchant, whose keys exist only for the run, so the same
signed notifications go to each of them and to the ceiling.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from arrears_router.bench.client import CALLBACK_PATH, HOST
from arrears_router.bench.plugin_sets import PluginSet
from arrears_router.bench.servers import (
    WORKER_READY,
    Running,
    database_server,
    start_server,
    together,
)
from arrears_router.bench.store import Probe
from arrears_router.bench.stores import StoreKind
from arrears_router.serve import module_command
from arrears_router.store import Mode

__all__ = ["MerchantKeys", "Site", "site", "start_routers", "start_split"]


@dataclass(frozen=True)
class MerchantKeys:
    sign_key: str
    aes_key: str

    @classmethod
    def new(cls) -> MerchantKeys:
        return cls(secrets.token_hex(16), f"hex:{secrets.token_hex(32)}")


@dataclass(frozen=True)
class Site:
    """Where one router run lives: its config (naming its store) and its logs."""

    config_file: Path
    url: str
    log_dir: Path


@contextlib.contextmanager
def site(kind: StoreKind, prefix: str, keys: MerchantKeys, plugins: PluginSet | None,
         mode: Mode, ports: Mapping[str, int] | None = None) -> Iterator[Site]:
    """A new store of ``kind`` and a config with the merchant and ``plugins`` in ``mode``
    (the built-ins calling the sinks at ``ports``); all gone after."""
    tables = "" if plugins is None else plugins.tables(mode, ports or {})
    with _workspace(prefix) as (config_dir, db_dir, log_dir), kind.new_store(db_dir) as url:
        yield Site(_write_config(config_dir, url, keys, tables), url, log_dir)


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A folder for what runs beside a router (its sinks' logs); gone after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.asynccontextmanager
async def start_routers(name: str, where: Site, instances: int, probe: Probe, *,
                        settle: bool, log_name: str = "router") -> AsyncIterator[Running]:
    """``instances`` routers on ``where``'s store, driven and measured as one server named
    ``name``, with the CPU of the store's database server if it is PostgreSQL here;
    ``settle``: each turn ends when its plugins are done, as ``probe`` (the store's) sees."""
    async with contextlib.AsyncExitStack() as stack:
        members = [
            await stack.enter_async_context(start_server(
                f"{name} router" if instances == 1 else f"{name} router #{number}",
                _router_command(where.config_file),
                where.log_dir / f"{log_name}-{number}.log"))
            for number in range(1, instances + 1)
        ]
        running = together(name, members)
        yield Running(running.name, running.pids, running.ports, probe if settle else None,
                      database_server(probe.backend_pid()))


@contextlib.asynccontextmanager
async def start_split(name: str, where: Site, probe: Probe) -> AsyncIterator[Running]:
    """``serve --no-dispatch``, which only accepts, and a ``worker`` beside it on the same
    store, which runs the plugins: driven as the one server they make, measured as two
    processes (their labels tell them apart)."""
    async with contextlib.AsyncExitStack() as stack:
        accept = await stack.enter_async_context(start_server(
            f"{name} router (no dispatch)", [*_router_command(where.config_file),
                                              "--no-dispatch"],
            where.log_dir / "router-accept.log"))
        worker = await stack.enter_async_context(start_server(
            f"{name} worker", module_command("arrears_router", "worker", "--config",
                                             str(where.config_file)),
            where.log_dir / "worker.log", ready=WORKER_READY))
        yield Running(name, (*accept.pids, *worker.pids), accept.ports, None,
                      database_server(probe.backend_pid()))


@contextlib.contextmanager
def _workspace(prefix: str) -> Iterator[tuple[Path, Path, Path]]:
    """Folders for a router's config, store and logs.

    The router watches its config's folder for edits: the store and the logs, which change
    all the time, get folders of their own, as data/ does in the default layout.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        config_dir, db_dir, log_dir = (Path(tmp, name) for name in ("config", "store", "logs"))
        for folder in (config_dir, db_dir, log_dir):
            folder.mkdir()
        yield config_dir, db_dir, log_dir


def _router_command(config_file: Path) -> list[str]:
    return module_command("arrears_router", "serve", "--config", str(config_file),
                          "--host", HOST, "--port", "0")


def _write_config(config_dir: Path, url: str, keys: MerchantKeys, tables: str) -> Path:
    config_file = config_dir / "bench.toml"
    # A JSON string is a TOML basic string: the URL may hold any character.
    config_file.write_text(
        f"""\
[server]
host = "{HOST}"
port = 0
callback_path = "{CALLBACK_PATH}"

[store]
url = {json.dumps(url)}

[[merchants]]
appid = "wxbench00000000001"
mch_id = "1900000999"
sign_types = ["HMAC-SHA256"]
sign_key = "{keys.sign_key}"
aes_key = "{keys.aes_key}"
{tables}""",
        encoding="utf-8",
    )
    return config_file
