"""Helpers for tests that drive router and worker processes through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MERCHANT = """
[store]
url = "sqlite:///router.db"

[[merchants]]
appid = "wx1"
mch_id = "m1"
sign_key = "k"
aes_key = "0123456789abcdef"
"""
"""The head of a config for a router process: its store beside the config, one merchant."""


def cli(config: Path, *args: str, env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Run ``arrears-router ARGS --json --config CONFIG``; its JSON lines."""
    result = subprocess.run(
        [sys.executable, "-m", "arrears_router", *args, "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False, env=env or dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def wait_until(check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return found


def wait_for_done(config: Path, env: Mapping[str, str], expected: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        records = cli(config, "deliveries", "list", "--status", "done", env=env)
        return records if len(records) >= expected else None

    return wait_until(done, f"{expected} deliveries done")


class Process:
    """``arrears-router serve`` or ``worker`` on a config, up once it has said so on stdout."""

    def __init__(self, config: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.log = config.parent / f"{args[0]}-{time.monotonic_ns()}.log"
        with self.log.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "arrears_router", *args, "--config", str(config)],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env or dict(os.environ),
            )
        assert self.popen.stdout is not None
        self.announced = self.popen.stdout.readline()
        assert self.announced, f"{args[0]} exited: {self.log.read_text()}"

    @property
    def url(self) -> str:
        return self.announced.split()[-1]

    def logged(self, text: str) -> bool:
        return text in self.log.read_text()

    def kill9(self) -> None:
        self.popen.kill()
        self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(timeout=30)
