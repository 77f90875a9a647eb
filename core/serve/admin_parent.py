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

__all__ = ["AdminProcess"]

log = logging.getLogger("arrears_router.admin")

RESTART_PAUSES_S = (0.5, 1.0, 2.0, 5.0, 10.0)
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

    async def _supervise(self) -> None:
        failures = 0
        while True:
            assert self._process is not None
            status = await self._process.wait()
            self._cut_lifeline()
            log.error("the admin process exited with status %s; restarting it", status)
            await asyncio.sleep(RESTART_PAUSES_S[min(failures, len(RESTART_PAUSES_S) - 1)])
            failures = failures + 1 if status else 0
            await self._spawn()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        await self._spawn()
        print(self._announcement, flush=True)  # the socket listens: connections queue on it
        self._supervising = asyncio.create_task(self._supervise())
        try:
            yield
        finally:
            self._supervising.cancel()
            self._cut_lifeline()
            process = self._process
            assert process is not None
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("the admin process did not stop in %.0f s; killing it", STOP_TIMEOUT_S)
                process.kill()
                await process.wait()
            self._sock.close()
