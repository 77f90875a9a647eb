"""The admin listener's process, beside ``serve``'s two: started again when it dies, on the
same address, and gone when ``serve`` is, however ``serve`` goes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.harness import RouterProcess, wait_until, write_config

from .test_engine import Proc, children, command_line, reaped, running

TOKEN = "admin-process-token-0123456789"
ADMIN = {"port": 0, "tokens": [{"name": "ops", "scope": "read", "token": TOKEN}]}


def the_admin(serve: RouterProcess) -> Proc:
    found = [proc for proc in children(serve.pid) if running(proc)
             and "arrears_router.admin.process" in command_line(proc.pid)]
    assert len(found) == 1, found
    return found[0]


def plugins(admin_url: str) -> int:
    return httpx.get(f"{admin_url}/admin/api/v1/plugins", timeout=30,
                     headers={"Authorization": f"Bearer {TOKEN}"}).status_code


def test_a_killed_admin_process_is_started_again_on_the_same_address(
        tmp_path: Path, start_process: Callable[..., RouterProcess]) -> None:
    config = write_config(tmp_path / "config.toml", server={"port": 0}, admin=ADMIN)
    serve = start_process(config, "serve")
    assert plugins(serve.admin_url) == 200
    first = the_admin(serve)
    os.kill(first.pid, signal.SIGKILL)
    again = wait_until(lambda: next((proc for proc in children(serve.pid) if running(proc)
                                     and proc.pid != first.pid
                                     and "arrears_router.admin.process"
                                     in command_line(proc.pid)), None),
                       "the admin process started again")
    assert plugins(serve.admin_url) == 200  # the address serve holds: the same one
    assert serve.logged("the admin process exited with status -9; restarting it")
    assert again.pid != first.pid


def test_the_admin_process_goes_when_serve_is_killed(
        tmp_path: Path, start_process: Callable[..., RouterProcess]) -> None:
    config = write_config(tmp_path / "config.toml", server={"port": 0}, admin=ADMIN)
    serve = start_process(config, "serve")
    admin = the_admin(serve)
    serve.kill9()  # no shutdown code runs: only its end of the lifeline closes
    wait_until(lambda: reaped(admin) or not running(admin), "the admin process gone")
