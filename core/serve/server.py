"""Runs an ASGI app on uvicorn, on a socket we bind, so port 0 works and is announced.

uvicorn's httptools protocol bounds neither a request's head nor how long a client may take
to send it: one request with 64 MB of headers grew the process by hundreds of MB, and a head
sent in part was held forever. :class:`BoundedHttpToolsProtocol` adds those bounds, in the
protocol, before any of it reaches the app. (granian has them built in, but its HTTP process
took about 40% more CPU a request than this one in ``arrears-router bench``.)
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable

import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = [
    "BODY_TIMEOUT_S",
    "HEAD_MAX_BYTES",
    "HEAD_MAX_FIELDS",
    "HEAD_TIMEOUT_S",
    "KEEP_ALIVE_S",
    "AnnouncingServer",
    "BoundedHttpToolsProtocol",
    "bind",
    "serve",
]

log = logging.getLogger("arrears_router.server")

HEAD_MAX_BYTES = 16 * 1024
"""A request's line and headers; WeChat's are well under 2 KiB. Checked after each read, so a
head may pass it by one read (at most 256 KiB) before it is refused."""
HEAD_MAX_FIELDS = 100
HEAD_TIMEOUT_S = 10.0
"""From the connection, or the end of the previous response, to the end of the head."""
BODY_TIMEOUT_S = 10.0
"""From the end of the head to the end of the body (at most ``max_body_bytes`` are kept)."""
KEEP_ALIVE_S = 5
"""An idle connection is closed after this long without a new request."""

_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
              b"content-length: 0\r\nconnection: close\r\n\r\n")
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _TooManyFields(Exception):
    """Raised in the parser's callback: it stops the parser, and uvicorn answers the error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a request head of at most :data:`HEAD_MAX_BYTES` and
    :data:`HEAD_MAX_FIELDS` headers (else 431), sent within :data:`HEAD_TIMEOUT_S`, and a body
    sent within :data:`BODY_TIMEOUT_S` (else 408); each refusal closes the connection.

    The head of the next request is counted from the end of the previous one, as the parser
    sees it; its time runs from the end of the previous response, when a client may send it.
    """

    _head_bytes: int | None = 0
    """What has been read of the head being read; None while a body is read."""
    _deadline: float | None = None
    """When the connection is closed unless timed anew (loop time); None: not timed."""
    _timer: asyncio.TimerHandle | None = None
    _too_many_fields = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._time(HEAD_TIMEOUT_S)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        # After parsing, so that the body after a head that ends in this read never counts.
        if self._head_bytes is not None and self._head_bytes > HEAD_MAX_BYTES:
            self._refuse(_TOO_LARGE, f"a request head over {HEAD_MAX_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= HEAD_MAX_FIELDS:  # here, so no more are ever kept
            self._too_many_fields = True
            raise _TooManyFields
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if self._too_many_fields:
            self._refuse(_TOO_LARGE, f"a request with over {HEAD_MAX_FIELDS} headers")
        else:
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._time(BODY_TIMEOUT_S)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0
        # The app has the whole request and its own deadlines, unless it has answered already
        # (a body too large is answered unread): then the next request is awaited.
        self._time(HEAD_TIMEOUT_S if self.cycle.response_complete else None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_bytes is not None and not self.transport.is_closing():
            self._time(HEAD_TIMEOUT_S)  # the request was read whole: the next is awaited

    def _time(self, seconds: float | None) -> None:
        """Close the connection ``seconds`` from now unless timed anew; None: no time limit.

        A request times its connection several times: that only notes the deadline, and the
        connection's one timer, once due, waits on if the deadline has moved (a timer made and
        cancelled each time cost the hot path several microseconds a request)."""
        if seconds is None:
            self._deadline = None
            return
        self._deadline = deadline = self.loop.time() + seconds
        if self._timer is None or deadline < self._timer.when():
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(deadline, self._due)

    def _due(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._deadline > self.loop.time():
            self._timer = self.loop.call_at(self._deadline, self._due)
            return
        what = "head" if self._head_bytes is not None else "body"
        self._refuse(_TIMED_OUT, f"a request {what} not sent within the time allowed")

    def _refuse(self, response: bytes, why: str) -> None:
        """Answer ``response`` unless another is owed or under way, then close."""
        if self.transport.is_closing():
            return
        log.info("closed a connection from %s: %s", self.client and self.client[0], why)
        if self._may_answer():
            self.transport.write(response)
        self.transport.close()

    def _may_answer(self) -> bool:
        cycle = self.cycle
        if self._head_bytes is None:  # reading a body: the app has this request
            return not cycle.response_started
        return not self.pipeline and (cycle is None or cycle.response_complete)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once the app has started and it listens."""

    def __init__(self, app: Litestar, on_ready: Callable[[], None]) -> None:
        # log_config=None: logging is the CLI's to set up, uvicorn only adds its own loggers.
        super().__init__(uvicorn.Config(
            app, http=BoundedHttpToolsProtocol, ws="none", lifespan="on", access_log=False,
            log_config=None, server_header=False, timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=10,
        ))
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


def serve(app: Litestar, host: str, port: int, *, name: str = "arrears-router") -> None:
    """Serve until SIGINT or SIGTERM. Once the app has started (its store open), prints
    ``<name> listening on http://HOST:PORT`` on stdout: tests and scripts wait for that line.
    """
    sock = bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host

    def announce() -> None:
        print(f"{name} listening on http://{shown}:{bound_port}", flush=True)

    server = AnnouncingServer(app, announce)
    # uvicorn re-raises the signal that stopped it once it has shut down, and restores the
    # handler it found: let that be one that says a graceful stop on SIGTERM is a success.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sys.exit(0))
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(3)
