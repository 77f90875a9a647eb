"""The HTTP surface: the WeChat callback, health and readiness. Handlers stay thin."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, cast

from litestar import Litestar, Response, asgi, get
from litestar.types import (
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Receive,
    Scope,
    Send,
)

from arrears_router.config import ServerConfig
from arrears_router.errcodes import ErrCode
from arrears_router.metrics import count_notification, observe_accept
from arrears_router.store import StoreError
from arrears_router.wire.envelope import Reply, encode_reply

__all__ = ["Service", "create_app"]


class Service(Protocol):
    """What answers the callback: the router in this process, or ``serve``'s engine."""

    async def receive(self, body: bytes) -> bytes:
        """The encoded reply to one notification's body."""

    async def ping(self) -> None:
        """Raise StoreError unless a payment could be stored now."""

    def running(self) -> AbstractAsyncContextManager[Any]:
        """Started on entry, stopped on exit, with the app."""


_JSON = "application/json"


def _json(body: bytes, status_code: int = 200) -> Response[bytes]:
    return Response(body, status_code=status_code, media_type=_JSON)


class _ClientGone(Exception):
    """The client went away before its body was whole: there is no one to answer."""


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it is known to be over ``limit`` (unread, then)."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


def create_app(service: Service, server: ServerConfig,
               beside: Sequence[AbstractAsyncContextManager[Any]] = ()) -> Litestar:
    """The service as an ASGI app; it starts and stops with the app's lifespan, and so do
    the processes ``beside`` it (entered once it runs, left before it stops)."""
    limit = server.max_body_bytes
    too_large = encode_reply(
        Reply(ErrCode.BODY_TOO_LARGE, f"request body is larger than {limit} bytes")
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with service.running(), contextlib.AsyncExitStack() as stack:
            for companion in beside:
                await stack.enter_async_context(companion)
            yield

    # A raw ASGI route: WeChat's callback is the hot path, and it needs nothing of Litestar's
    # per-request machinery (signature models, response objects), only the body's bytes.
    @asgi(server.callback_path, copy_scope=False)
    async def callback(scope: Scope, receive: Receive, send: Send) -> None:
        if cast("HTTPScope", scope)["method"] != "POST":
            await _answer(send, 405, b'{"detail":"the callback takes POST"}')
            return
        started = time.perf_counter()
        try:
            body = await _read_body(scope, receive, limit)
        except _ClientGone:  # a part of a body is no notification: nothing to read or answer
            return
        if body is None:
            await _answer(send, 200, too_large)
            count_notification(ErrCode.BODY_TOO_LARGE)  # decided here; the rest by the service
            observe_accept(time.perf_counter() - started)
            return
        # The raw bytes: the signature covers fields exactly as sent.
        await _answer(send, 200, await service.receive(body))
        observe_accept(time.perf_counter() - started)

    @get("/healthz")
    async def healthz() -> Response[bytes]:
        return _json(b'{"status":"ok"}')

    @get("/readyz")
    async def readyz() -> Response[bytes]:
        try:
            await service.ping()
        except StoreError as exc:
            return _json(encode_reply(Reply(ErrCode.STORE_UNAVAILABLE, str(exc))), 503)
        return _json(b'{"status":"ready"}')

    return Litestar(
        route_handlers=[callback, healthz, readyz],
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
    )


