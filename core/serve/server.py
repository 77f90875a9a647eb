"""Runs an ASGI app on uvicorn, on a socket we bind, so port 0 works and is announced."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable

import uvicorn
from litestar import Litestar

__all__ = ["AnnouncingServer", "bind", "serve"]


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
            app, lifespan="on", access_log=False, log_config=None, server_header=False,
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
