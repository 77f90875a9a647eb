"""The admin process as ``serve`` sees it: started beside the engine, restarted if it dies.

``serve`` binds the admin socket itself and hands it down, so a restarted child listens
where the last one did, with no moment when the address is free for another program.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Sequence

from arrears_router.serve.children import keep_running, stop_child

__all__ = ["AdminProcess"]

log = logging.getLogger("arrears_router.admin")

STOP_TIMEOUT_S = 10.0


class AdminProcess:
    def __init__(self, command: Sequence[str], sock: socket.socket, announcement: str) -> None:
        """:param command: runs the admin process; ``--fd N --lifeline M`` are added."""
        self._command = list(command)
        self._sock = sock
        self._announcement = announcement
        self._process: asyncio.subprocess.Process | None = None
        self._lifeline = -1
        """Our end of the child's lifeline: closing it stops the child."""
        self._supervising: asyncio.Task[None] | None = None

    async def _spawn(self) -> None:
        theirs, ours = os.pipe()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._command, "--fd", str(self._sock.fileno()), "--lifeline", str(theirs),
                pass_fds=(self._sock.fileno(), theirs), stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            os.close(ours)
            raise
        finally:
            os.close(theirs)
        self._lifeline = ours

    def _cut_lifeline(self) -> None:
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1

    def _running_process(self) -> asyncio.subprocess.Process:
        assert self._process is not None
        return self._process

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self._spawn()
        print(self._announcement, flush=True)  # the socket listens: connections queue on it
        self._supervising = asyncio.create_task(keep_running(
            "admin process", log, self._running_process, self._spawn,
            on_exit=self._cut_lifeline))
        try:
            yield
        finally:
            self._supervising.cancel()
            self._cut_lifeline()
            await stop_child(self._running_process(), STOP_TIMEOUT_S, "admin process", log)
            self._sock.close()
