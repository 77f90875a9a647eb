"""The router runs from any folder: a package in the working directory named like one of
ours (``core``, ``plugins``, even ``arrears_router``) is never imported in its place, by
``serve``, by its engine child (``python -P -m ...``), or by the other commands.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from arrears_router.config import load_config
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import CONSOLE_SCRIPT, RouterProcess, cli_json, write_config

TRAP = 'raise ImportError("imported {name}/ from the working directory")\n'


def trapped_folder(path: Path, *names: str) -> Path:
    """A folder holding packages ``names`` that refuse to be imported."""
    for name in names:
        (path / name).mkdir(parents=True)
        (path / name / "__init__.py").write_text(TRAP.format(name=name))
    for name in names:  # the trap works
        tried = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=path,
                               capture_output=True, text=True, check=False)
        assert f"imported {name}/ from the working directory" in tried.stderr
    return path


def pay(server: RouterProcess, transaction_id: str) -> int:
    """Send a signed notification as WeChat does; the errcode of the reply."""
    body = Notifier(load_config(server.config).merchants[0]).notification(
        sample_payload(transaction_id))
    reply = httpx.post(f"{server.url}/ridecode/arrears", content=body, timeout=30).json()
    errcode: int = reply["errcode"]
    return errcode


def test_serve_answers_from_a_folder_with_core_and_plugins_packages(
    tmp_path: Path, start_process: Callable[..., RouterProcess]
) -> None:
    folder = trapped_folder(tmp_path / "work", "core", "plugins")
    config = write_config(tmp_path / "config.toml", plugins={"ledger": {}})

    # `python -m`, which puts the working directory first on serve's own path
    server = start_process(config, "serve", "--port", "0", cwd=folder)

    assert pay(server, "TX-CWD-1") == 0
    [event] = cli_json("events", "show", "TX-CWD-1", config=config, cwd=folder)
    assert event["payment"]["transaction_id"] == "TX-CWD-1"
    assert "from the working directory" not in server.log_text()


def test_the_engine_child_never_imports_from_the_working_directory(
    tmp_path: Path, start_process: Callable[..., RouterProcess]
) -> None:
    """Even a folder named ``arrears_router`` there stays unseen: serve is the installed
    script, which keeps the working directory off its path, and its engine runs with -P."""
    folder = trapped_folder(tmp_path / "work", "arrears_router")
    config = write_config(tmp_path / "config.toml")

    server = start_process(config, "serve", "--port", "0", cwd=folder, program=CONSOLE_SCRIPT)

    assert pay(server, "TX-CWD-2") == 0  # stored by the engine child
    assert "from the working directory" not in server.log_text()
