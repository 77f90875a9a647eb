"""End-to-end fixtures: the real ``arrears-router serve`` process, on a free port, over HTTP.

A :class:`Router` owns one temp folder: its ``config.toml`` (two test merchants, an SQLite
store file), the server subprocess, and the CLI run against the same config. Fixtures are
explicit: ask for ``router`` (one per test), ``start_router`` (a factory, for options or a
second server) or ``module_router`` (shared by a module, for property tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from arrears_router.config import Config, MerchantConfig, load_config
from arrears_router.wire.notifier import Notifier
from arrears_router.wire.signature import SignType
from tests.harness import RouterProcess, cli, cli_json, json_lines, write_config

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


class Router:
    """One router: its config and store on disk, and its server process when started."""

    def __init__(self, directory: Path, *, max_body_bytes: int = 16384) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.max_body_bytes = max_body_bytes
        self.config_path = write_config(
            directory / "config.toml", merchants=(HMAC_MERCHANT, MD5_MERCHANT),
            server={"host": "127.0.0.1", "port": 0, "max_body_bytes": max_body_bytes},
            store={"url": "sqlite:///store/router.db"},
        )
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
        self.server = RouterProcess(self.config_path, "serve", "--port", "0")
        self.base_url = ""
        self.callback_url = ""
        self.http = httpx.Client(timeout=30)

    # -- the server process

    def start(self) -> None:
        self.server.start()
        self.base_url = self.server.url
        self.callback_url = self.base_url + self.config.server.callback_path

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        self.server.kill9()
        self._new_client()

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit; returns the exit code."""
        code = self.server.stop()
        self._new_client()
        return code

    def restart(self) -> int | None:
        """Stop gracefully (if running) and start again on the same config and store.

        Returns the stopped server's exit code (None if it was not running); the port may change.
        """
        code = self.stop() if self.server.popen is not None else None
        self.start()
        return code

    def _new_client(self) -> None:
        self.http.close()  # no pooled connection may outlive the process it was made to
        self.http = httpx.Client(timeout=30)

    def close(self) -> None:
        """Teardown: always leaves no process behind."""
        self.server.close()
        self.http.close()

    # -- HTTP

    def post_raw(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(self.callback_url, content=body,
                              headers={"content-type": "application/json", **(headers or {})})

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST a body to the callback; the reply must be HTTP 200 and a JSON object."""
        return reply_of(self.post_raw(body, headers))

    # -- the CLI, on the same config

    def cli_json(self, *args: str) -> list[dict[str, Any]]:
        """A ``--json`` command's lines, each one JSON object."""
        return cli_json(*args, config=self.config_path, cwd=self.directory)

    def events(self, limit: int = 10_000) -> list[dict[str, Any]]:
        return self.cli_json("events", "list", "--limit", str(limit))

    def event(self, transaction_id: str) -> list[dict[str, Any]]:
        """``events show TX --json``: every stored event with this transaction_id (none: [])."""
        result = cli("events", "show", transaction_id, "--json", config=self.config_path,
                     cwd=self.directory)
        if result.returncode != 0:
            assert "no stored payment" in result.stderr, result.stderr
            return []
        return json_lines(result.stdout)

    def quarantined(self, limit: int = 10_000) -> list[dict[str, Any]]:
        return self.cli_json("quarantine", "list", "--limit", str(limit))


def reply_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    reply = response.json()
    assert isinstance(reply, dict), reply
    assert isinstance(reply.get("errcode"), int), reply
    assert isinstance(reply.get("errmsg"), str), reply
    return reply


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
