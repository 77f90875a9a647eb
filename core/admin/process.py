"""Runs the admin app: alone (``arrears-router admin``), or beside ``serve`` as its child.

As ``serve``'s child it is handed the socket ``serve`` bound (so an address in use fails
``serve`` at once, and a restarted child listens where the last one did) and the read end
of a pipe, its lifeline: when ``serve`` goes, however it goes, the pipe closes and this
process stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

from arrears_router.admin.app import create_admin_app
from arrears_router.admin.context import Admin
from arrears_router.admin.live_config import LiveConfig
from arrears_router.config import Config, ConfigError, load_config
from arrears_router.logs import configure_logging, secrets_in
from arrears_router.serve import run_loop
from arrears_router.serve.server import AnnouncingServer, bind
from arrears_router.store import open_store

__all__ = ["ANNOUNCEMENT", "announcement", "listen", "main", "run_admin"]

log = logging.getLogger("arrears_router.admin")

ANNOUNCEMENT = "arrears-router admin listening on"


def announcement(sock: socket.socket) -> str:
    """``arrears-router admin listening on http://HOST:PORT``: tests and scripts wait for it."""
    host, port = sock.getsockname()[:2]
    return f"{ANNOUNCEMENT} http://{f'[{host}]' if ':' in host else host}:{port}"


def listen(config: Config, host: str | None = None, port: int | None = None) -> socket.socket:
    """The admin socket, bound; SystemExit saying why it cannot be."""
    host = host or config.admin.host
    port = config.admin.port if port is None else port
    try:
        return bind(host, port)
    except OSError as exc:
        raise SystemExit(f"admin: cannot listen on {host}:{port}: {exc.strerror}") from None


class _ChildServer(AnnouncingServer):
    """As ``serve``'s child: ``serve`` decides when this stops. A Ctrl-C reaches the whole
    process group, and a child that left first would only be started again."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)
        yield


async def run_admin(config: Config, config_file: Path, sock: socket.socket, *,
                    lifeline: int | None = None) -> None:
    """Serve the admin app on ``sock`` until SIGINT/SIGTERM; with a ``lifeline`` (as
    ``serve``'s child, which announces the address itself), until that closes."""
    admin = Admin(open_store(config.store.url), LiveConfig(config, config_file))
    app = create_admin_app(admin)
    if lifeline is None:
        await AnnouncingServer(app, lambda: print(announcement(sock), flush=True)).serve(
            sockets=[sock])
        return
    server = _ChildServer(app, lambda: None)

    def on_lifeline() -> None:
        if not os.read(lifeline, 64):  # end of file: serve is gone
            asyncio.get_running_loop().remove_reader(lifeline)
            server.should_exit = True

    asyncio.get_running_loop().add_reader(lifeline, on_lifeline)
    await server.serve(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> None:
    """Started by ``serve`` with the socket it bound and a lifeline; never by hand."""
    parser = argparse.ArgumentParser(prog="python -m arrears_router.admin.process")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--lifeline", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise SystemExit(f"config error: {args.config}: {exc}") from None
    configure_logging(config.log.format, config.log.level, secrets_in(config))
    sock = socket.socket(fileno=args.fd)
    run_loop(run_admin(config, args.config, sock, lifeline=args.lifeline))


if __name__ == "__main__":
    main()
