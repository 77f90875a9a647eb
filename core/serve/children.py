"""What ``serve``'s HTTP process does alike for each process it starts beside it (the engine,
the admin listener): start it again whenever it dies, and stop it within a bound."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["RESTART_PAUSES_S", "keep_running", "stop_child"]

RESTART_PAUSES_S = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Between a death and the next start; growing while starts keep failing."""


async def keep_running(
    what: str, log: logging.Logger, process: Callable[[], asyncio.subprocess.Process],
    spawn: Callable[[], Awaitable[None]], *, failed: tuple[type[Exception], ...] = (OSError,),
    on_exit: Callable[[], None] = lambda: None,
) -> None:
    """Start ``what`` again (``spawn``) whenever its ``process`` exits, after a pause; a
    start that raises one of ``failed`` is logged and tried again after a longer one. Runs
    until cancelled."""
    failures = 0
    while True:
        status = await process().wait()  # at once, after a failed start: the same process
        on_exit()
        log.error("the %s exited with status %s; restarting it", what, status)
        await asyncio.sleep(RESTART_PAUSES_S[min(failures, len(RESTART_PAUSES_S) - 1)])
        try:
            await spawn()
        except failed as exc:
            failures += 1
            log.error("the %s did not start again: %s", what, exc)
        else:
            failures = 0
            log.info("the %s is running again", what)


async def stop_child(process: asyncio.subprocess.Process, timeout_s: float, what: str,
                     log: logging.Logger) -> None:
    """Wait for ``process`` to exit, told to already; kill it past ``timeout_s``."""
    if process.returncode is not None:
        return
    try:
        await asyncio.wait_for(process.wait(), timeout_s)
    except TimeoutError:
        log.error("the %s did not stop in %.0f s; killing it", what, timeout_s)
        process.kill()
        await process.wait()
