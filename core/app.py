"""The HTTP surface: the WeChat callback, health and readiness. Handlers stay thin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from core.protocol import ErrCode, Reply, encode_reply
from core.runtime import Router
from core.store import StoreError

__all__ = ["create_app"]

_JSON = "application/json"


def _json(body: bytes, status_code: int = 200) -> Response[bytes]:
    return Response(body, status_code=status_code, media_type=_JSON)


def _body_too_large(limit: int) -> Response[bytes]:
    reply = Reply(ErrCode.BODY_TOO_LARGE, f"request body is larger than {limit} bytes")
    return _json(encode_reply(reply))


def create_app(router: Router) -> Litestar:
    """The router as an ASGI app; the router starts and stops with the app's lifespan."""
    store = router.store
    limit = router.config.server.max_body_bytes

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with router.running():
            yield

    @post(
        router.config.server.callback_path,
        request_max_body_size=limit,
        status_code=200,
        exception_handlers={
            RequestEntityTooLarge: lambda _request, _exc: _body_too_large(limit)
        },
    )
    async def callback(request: Request[Any, Any, Any]) -> Response[bytes]:
        # The raw bytes: the signature covers fields exactly as sent.
        return _json(encode_reply(await router.intake.receive(await request.body())))

    @get("/healthz")
    async def healthz() -> Response[bytes]:
        return _json(b'{"status":"ok"}')

    @get("/readyz")
    async def readyz() -> Response[bytes]:
        try:
            await store.ping()
        except StoreError as exc:
            return _json(encode_reply(Reply(ErrCode.STORE_UNAVAILABLE, str(exc))), 503)
        return _json(b'{"status":"ready"}')

    return Litestar(
        route_handlers=[callback, healthz, readyz],
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
    )


