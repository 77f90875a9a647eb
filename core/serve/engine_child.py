"""``serve``'s engine: the process that verifies, stores and delivers, beside the HTTP one.

``serve`` runs as two processes. The HTTP process parses requests and writes replies; it
hands each notification's body, over a socket pair, to this one, which runs the whole router
(verify, decrypt, the group-committed store, the dispatcher, live config). Two interpreters
use both cores, where one had its event loop and its store's writer thread take turns on one
interpreter lock.

The engine stops when its socket closes (the HTTP process stopped, or died), once the
notifications in flight are committed and the deliveries in flight have finished.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from arrears_router.config import ConfigError, load_config
from arrears_router.logs import configure_logging, secrets_in
from arrears_router.platform.registry import RegistryError
from arrears_router.platform.runtime import Router
from arrears_router.serve import run_loop
from arrears_router.serve.ipc import FrameProtocol, Framer, Kind
from arrears_router.store import StoreError

__all__ = ["main", "run_engine"]

log = logging.getLogger("arrears_router.engine")


async def run_engine(router: Router, sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    framer = Framer(loop)
    closed = asyncio.Event()
    in_flight: set[asyncio.Task[None]] = set()

    async def receive(seq: int, body: bytes) -> None:
        try:
            reply = await router.receive(body)
        except Exception:  # the HTTP process answers 50001: WeChat will send it again
            log.exception("notification %d: the engine failed on it", seq)
            framer.send(seq, Kind.FAILED, b"internal error")
            return
        framer.send(seq, Kind.OK, reply)

    async def ping(seq: int, _: bytes) -> None:
        try:
            await router.ping()
        except StoreError as exc:
            framer.send(seq, Kind.FAILED, str(exc).encode())
            return
        framer.send(seq, Kind.OK)

    handlers: dict[Kind, Callable[[int, bytes], Coroutine[Any, Any, None]]] = {
        Kind.RECEIVE: receive, Kind.PING: ping,
    }

    def on_frame(seq: int, kind: Kind, payload: bytes) -> None:
        handler = handlers.get(kind)
        if handler is None:
            log.error("frame %d: unexpected kind %s from the HTTP process", seq, kind.name)
            return
        task: asyncio.Task[None] = loop.create_task(handler(seq, payload))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    # The HTTP process decides when this one stops, by closing the socket once its own
    # requests are answered: a Ctrl-C, or a service manager's SIGTERM to the whole group,
    # reaches both processes, and this one must not leave first.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    async with router.running():
        transport, _ = await loop.create_unix_connection(
            lambda: FrameProtocol(framer, on_frame, closed.set), sock=sock
        )
        framer.send(0, Kind.READY)
        await closed.wait()
        if in_flight:
            await asyncio.wait(set(in_flight))
        transport.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Started by ``serve`` (``engine_parent``) with its end of the socket pair; never by hand."""
    parser = argparse.ArgumentParser(prog="python -m arrears_router.serve.engine_child")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--no-dispatch", action="store_true")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        # As the HTTP process does: one format on the stream both write to.
        configure_logging(config.log.format, config.log.level, secrets_in(config))
        router = Router(config, config_file=args.config, dispatch=not args.no_dispatch)
    except (ConfigError, RegistryError) as exc:
        raise SystemExit(f"config error: {args.config}: {exc}") from None
    sock = socket.socket(fileno=args.fd)
    run_loop(run_engine(router, sock))


if __name__ == "__main__":
    main()
