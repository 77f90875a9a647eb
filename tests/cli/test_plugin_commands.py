"""Commands that installed plugin packages add through ``register_commands``: a package that
cannot be imported, or whose hook raises, is named on stderr and left out, and ``serve`` and
every other command (other plugins' included) still work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import (
    RouterProcess,
    cli,
    cli_json,
    install_packages,
    python_path,
    wait_until,
    write_config,
)

PLUGIN = '''
from arrears_router import hookimpl


class Plugin:
    @hookimpl
    def arrears_paid(self) -> None:
        pass
'''
BROKEN_PACKAGES = {
    # Its hook raises.
    "raising_commands": PLUGIN + '''

@hookimpl
def register_commands(commands):
    raise RuntimeError("commands are broken")
''',
    # Its module cannot be imported.
    "unimportable": "import arrears_missing_dependency\n" + PLUGIN,
}
RAISING = ("plugin raising_commands: register_commands failed, its commands are left out: "
           "RuntimeError('commands are broken')")
UNIMPORTABLE = ("plugins.unimportable: the installed package's 'arrears_unimportable:Plugin'"
                " cannot be loaded: ModuleNotFoundError(\"No module named"
                " 'arrears_missing_dependency'\"); its commands are left out")


def package(folder: Path, name: str, module: str) -> Path:
    """A plugin package, as a third party publishes one: ``arrears-NAME``."""
    (folder / "src" / f"arrears_{name}").mkdir(parents=True)
    (folder / "src" / f"arrears_{name}" / "__init__.py").write_text(module)
    (folder / "pyproject.toml").write_text(f"""
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "arrears-{name.replace("_", "-")}"
version = "1.0.0"

[project.entry-points."arrears_router.plugins"]
{name} = "arrears_{name}:Plugin"
""")
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, example_site: Path) -> dict[str, str]:
    """A child's environment with the broken packages installed, and the example one."""
    sources = tmp_path_factory.mktemp("broken-packages")
    site = install_packages(tmp_path_factory.mktemp("broken-site"), *(
        package(sources / name, name, module) for name, module in BROKEN_PACKAGES.items()))
    return python_path(site, example_site)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "config.toml",
                        plugins={"receipt_log": {"directory": str(tmp_path / "receipts")}})


def test_serve_runs_and_names_the_broken_plugins(
    env: dict[str, str], config: Path, start_process: Callable[..., RouterProcess]
) -> None:
    server = start_process(config, "serve", "--port", "0", env=env)

    [sent] = cli_json("simulate", "--url", f"{server.url}/ridecode/arrears", config=config,
                      env=env)
    assert sent["errcode"] == 0
    receipts = config.parent / "receipts"
    wait_until(lambda: list(receipts.glob("*.json")), "the installed plugin's receipt")
    assert RAISING in server.log_text()
    assert UNIMPORTABLE in server.log_text()


@pytest.mark.parametrize("args", [["check-config"], ["--help"], ["ledger", "--help"]],
                         ids=" ".join)
def test_other_commands_work_and_name_the_broken_plugins(
    env: dict[str, str], config: Path, args: list[str]
) -> None:
    result = cli(*args, config=None if "--help" in args else config, env=env, check=True)
    assert RAISING in result.stderr
    assert UNIMPORTABLE in result.stderr


def test_a_working_plugins_commands_are_there_beside_the_broken(
    env: dict[str, str], config: Path, tmp_path: Path
) -> None:
    (tmp_path / "receipts").mkdir()
    (tmp_path / "receipts" / "m1_T1_receipt_log.json").write_text(
        '{"transaction_id": "T1", "yuan": "3.00"}')
    listed = cli("receipts", str(tmp_path / "receipts"), config=config, env=env, check=True)
    assert listed.stdout == "T1  3.00 yuan\n"
    helped = cli("--help", env=env, check=True).stdout
    assert "receipts" in helped
    assert "ledger" in helped
    assert "raising_commands" not in helped


def test_a_broken_plugin_that_is_configured_refuses_to_start(
    env: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "config.toml", plugins={"unimportable": {}})
    result = cli("serve", "--port", "0", config=config, env=env)
    assert result.returncode != 0
    assert "config error:" in result.stderr
    assert "plugins.unimportable: the installed package's" in result.stderr
    assert "No module named 'arrears_missing_dependency'" in result.stderr
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout
