"""End-to-end fixtures: the real ``arrears-router serve`` process, on a free port, over HTTP.

A :class:`Router` owns one temp folder: its ``config.toml`` (two test merchants, an SQLite
store file), the server subprocess, and the CLI run against the same config. Fixtures are
explicit: ask for ``router`` (one per test), ``start_router`` (a factory, for options or a
second server) or ``module_router`` (shared by a module, for property tests).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from arrears_router.config import Config, MerchantConfig, load_config
from arrears_router.wire.notifier import Notifier
from arrears_router.wire.signature import SignType

# Keys are plain literals: they exist only in these tests.
HMAC_MERCHANT = {
    "appid": "wxe2e0000000hmac01",
    "mch_id": "1900000201",
    "sign_types": ["HMAC-SHA256"],
    "sign_key": "e2eHmacSignKey0123456789abcdefAB",
    "aes_key": "e2e-aes-256-key-for-tests-only-0",  # plain text: 32 bytes, AES-256
}
MD5_MERCHANT = {
    "appid": "wxe2e00000000md502",
    "mch_id": "1900000202",
    "sign_types": ["MD5", "HMAC-SHA256"],
    "sign_key": "e2eMd5SignKey0123456789abcdefABC",
    "aes_key": "base64:AAECAwQFBgcICQoLDA0ODw==",  # 16 bytes, AES-128
}

READY_LINE = re.compile(r"arrears-router listening on (http://\S+)")
STARTUP_DEADLINE_S = 30.0
SHUTDOWN_DEADLINE_S = 15.0


def _toml_value(value: object) -> str:
    return json.dumps(value)  # a JSON string or list of strings is valid TOML


def write_config(directory: Path, *, max_body_bytes: int) -> Path:
    lines = [
        "[server]",
        'host = "127.0.0.1"',
        "port = 0",
        f"max_body_bytes = {max_body_bytes}",
        "",
        "[store]",
        'url = "sqlite:///store/router.db"',
    ]
    for merchant in (HMAC_MERCHANT, MD5_MERCHANT):
        lines += ["", "[[merchants]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in merchant.items()]
    path = directory / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Router:
    """One router: its config and store on disk, and its server process when started."""

    def __init__(self, directory: Path, *, max_body_bytes: int = 16384) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_body_bytes = max_body_bytes
        self.config_path = write_config(directory, max_body_bytes=max_body_bytes)
        self.store_path = directory / "store" / "router.db"
        self.config: Config = load_config(self.config_path)
        hmac_merchant, md5_merchant = self.config.merchants
        self.hmac_merchant: MerchantConfig = hmac_merchant
        self.md5_merchant: MerchantConfig = md5_merchant
        self.hmac = Notifier(hmac_merchant)
        """The HMAC-SHA256-only merchant."""
        self.md5 = Notifier(md5_merchant, SignType.MD5)
        """The merchant that accepts MD5 and HMAC-SHA256, signing with MD5."""
        self.md5_hmac = Notifier(md5_merchant, SignType.HMAC_SHA256)
        """The same MD5+HMAC merchant, signing with HMAC-SHA256."""
        self.base_url = ""
        self.callback_url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._starts = 0
        self.http = httpx.Client(timeout=30)

    # -- the server process

    @property
    def stderr_path(self) -> Path:
        return self.directory / f"server-{self._starts}.stderr"

    def server_stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def start(self) -> None:
        assert self.process is None, "already running"
        self._starts += 1
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "arrears_router", "serve", "--config", str(self.config_path),
             "--port", "0"],
            cwd=self.directory, stdout=subprocess.PIPE, stderr=self._stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        lines: queue.Queue[str | None] = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=_pump, args=(self.process.stdout, lines), daemon=True).start()
        base_url = self._await_ready(lines)
        self.base_url = base_url
        self.callback_url = base_url + self.config.server.callback_path

    def _await_ready(self, lines: queue.Queue[str | None]) -> str:
        """Read stdout lines until the listening line, the process's exit, or the deadline."""
        seen: list[str] = []
        try:
            while True:
                line = lines.get(timeout=STARTUP_DEADLINE_S)
                if line is None:
                    assert self.process is not None
                    code = self.process.wait(timeout=SHUTDOWN_DEADLINE_S)
                    pytest.fail(f"the server exited ({code}) before listening;\nstdout: "
                                f"{''.join(seen)}\nstderr:\n{self.server_stderr()}")
                if match := READY_LINE.search(line):
                    return match.group(1)
                seen.append(line)
        except queue.Empty:
            self.kill9()
            pytest.fail(f"no listening line within {STARTUP_DEADLINE_S} s;\nstdout: "
                        f"{''.join(seen)}\nstderr:\n{self.server_stderr()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        assert self.process is not None, "not running"
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._forget_process()

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        assert self.process is not None, "not running"
        self.process.terminate()
        try:
            code = self.process.wait(timeout=SHUTDOWN_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the server ignored SIGTERM;\nstderr:\n{self.server_stderr()}")
        self._forget_process()
        return code

    def restart(self) -> int | None:
        """Stop gracefully (if running) and start again on the same config and store.

        Returns the stopped server's exit code (None if it was not running); the port may change.
        """
        code = self.stop() if self.process is not None else None
        self.start()
        return code

    def _forget_process(self) -> None:
        self.process = None  # its stdout is closed by _pump at EOF
        self.http.close()  # no pooled connection may outlive the process it was made to
        self.http = httpx.Client(timeout=30)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """Teardown: always leaves no process behind."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=SHUTDOWN_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._forget_process()
        self.http.close()

    # -- HTTP

    def post_raw(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(self.callback_url, content=body,
                              headers={"content-type": "application/json", **(headers or {})})

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST a body to the callback; the reply must be HTTP 200 and a JSON object."""
        return reply_of(self.post_raw(body, headers))

    # -- the CLI, on the same config

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "arrears_router", *args, "--config", str(self.config_path)],
            cwd=self.directory, capture_output=True, text=True, timeout=120, check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(f"`arrears-router {' '.join(args)}` exited {result.returncode}:\n"
                        f"{result.stdout}\n{result.stderr}")
        return result

    def cli_json(self, *args: str) -> list[dict[str, Any]]:
        """A ``--json`` command's lines, each one JSON object."""
        return _json_lines(self.cli(*args, "--json").stdout)

    def events(self, limit: int = 10_000) -> list[dict[str, Any]]:
        return self.cli_json("events", "list", "--limit", str(limit))

    def event(self, transaction_id: str) -> list[dict[str, Any]]:
        """``events show TX --json``: every stored event with this transaction_id (none: [])."""
        result = self.cli("events", "show", transaction_id, "--json", check=False)
        if result.returncode != 0:
            assert "no stored payment" in result.stderr, result.stderr
            return []
        return _json_lines(result.stdout)

    def quarantined(self, limit: int = 10_000) -> list[dict[str, Any]]:
        return self.cli_json("quarantine", "list", "--limit", str(limit))


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def reply_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    reply = response.json()
    assert isinstance(reply, dict), reply
    assert isinstance(reply.get("errcode"), int), reply
    assert isinstance(reply.get("errmsg"), str), reply
    return reply


def _pump(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Forward the server's stdout lines; None at EOF (the process exited or closed it)."""
    with stream:
        for raw in stream:
            lines.put(raw.decode(errors="replace"))
    lines.put(None)


@contextmanager
def running_router(directory: Path, **options: Any) -> Iterator[Router]:
    router = Router(directory, **options)
    try:
        router.start()
        yield router
    finally:
        router.close()


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[Callable[..., Router]]:
    """A factory: ``start_router(max_body_bytes=...)`` starts a router; all stop at teardown."""
    routers: list[Router] = []

    def start(**options: Any) -> Router:
        router = Router(tmp_path / f"router-{len(routers)}", **options)
        routers.append(router)
        router.start()
        return router

    yield start
    for router in routers:
        router.close()


@pytest.fixture
def router(start_router: Callable[..., Router]) -> Router:
    return start_router()


@pytest.fixture(scope="module")
def module_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    with running_router(tmp_path_factory.mktemp("router")) as router:
        yield router
