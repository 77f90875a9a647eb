"""A real local HTTP server for the plugins' tests: it records every request and answers
as told — success, 500, 429 with Retry-After, 400, or too slowly — so the tests see the
exact requests a plugin made and what it did with each answer.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.harness import wait_until


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    """A JSON value, or bytes sent as they are."""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering: longer than a plugin's timeout makes it time out."""


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes
    at: float = field(default_factory=time.monotonic)
    """When it arrived, on this machine's monotonic clock: orders requests across servers."""

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: list[Answer] = []
        self.default = Answer()
        self._changed = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_request(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command, parts.path, parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length),
                )
                answer = server._record(recorded)
                if answer.delay:
                    time.sleep(answer.delay)
                body = answer.body if isinstance(answer.body, bytes) else json.dumps(
                    answer.body).encode()
                try:
                    self.send_response(answer.status)
                    for name, value in {"content-type": "application/json",
                                        **answer.headers}.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: what a timeout test wants

            do_GET = do_POST = do_PUT = do_PATCH = do_request

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def script(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order; then with ``default``."""
        with self._changed:
            self._script.extend(answers)

    def _record(self, recorded: Recorded) -> Answer:
        with self._changed:
            self.requests.append(recorded)
            self._changed.notify_all()
            return self._script.pop(0) if self._script else self.default

    def wait_for(self, count: int) -> list[Recorded]:
        """Block until ``count`` requests have arrived; all of them so far."""
        return wait_until(lambda: self.requests[:] if len(self.requests) >= count else None,
                          f"{count} requests at {self.url}", changed=self._changed)

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def http_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture
def refused_url() -> str:
    """An address on this machine where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
