"""The benchmark's ceiling: a bare Litestar endpoint on the router's own server runner.

It answers the callback path with a constant reply and does nothing else, so the bench's
router/ceiling ratio isolates what the accept path adds over HTTP, Litestar and uvicorn.
Run as ``python -m arrears_router.bench.ceiling --port 0``; the bench starts it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from litestar import Litestar, Response, post

from arrears_router.config import ServerConfig

__all__ = ["READY_NAME", "create_ceiling_app", "main"]

READY_NAME = "bench-ceiling"
_REPLY = b'{"errcode":0,"errmsg":"ok"}'


def create_ceiling_app(callback_path: str, max_body_bytes: int) -> Litestar:
    """Built like ``serve.app.create_app``'s callback, so only the handler's work differs."""

    @post(callback_path, request_max_body_size=max_body_bytes, status_code=200)
    async def callback(body: bytes) -> Response[bytes]:
        return Response(_REPLY, status_code=200, media_type="application/json")

    return Litestar(route_handlers=[callback], openapi_config=None, logging_config=None)


def main(argv: Sequence[str] | None = None) -> None:
    from arrears_router.serve.server import serve

    defaults = ServerConfig()
    parser = argparse.ArgumentParser(prog="python -m arrears_router.bench.ceiling")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--callback-path", default=defaults.callback_path)
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes)
    args = parser.parse_args(argv)
    # The same logging set-up as the router's CLI, so neither side pays for more of it.
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    serve(create_ceiling_app(args.callback_path, args.max_body_bytes), args.host, args.port,
          name=READY_NAME)


if __name__ == "__main__":
    main()
