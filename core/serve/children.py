"""What ``serve``'s HTTP process does alike for each process it starts beside it (the engine,
the admin listener): start it again whenever it dies, and stop it within a bound."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

__all__ = ["RESTART_PAUSES_S", "STEADY_S", "keep_running", "stop_child"]

RESTART_PAUSES_S = (0.5, 1.0, 2.0, 5.0, 10.0)
"""Between a death and the next start: growing while the child keeps dying young, or its
starts keep failing, so a crash loop never takes the cores the intake needs."""
STEADY_S = 30.0
"""A child that ran this long before it died was not crash-looping: its next pause is the
first again."""


async def keep_running(
    what: str, log: logging.Logger, process: Callable[[], asyncio.subprocess.Process],
    spawn: Callable[[], Awaitable[None]], *, failed: tuple[type[Exception], ...] = (OSError,),
    on_exit: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic,
) -> None:
    """Start ``what`` again (``spawn``) whenever its ``process`` (started already) exits.
    A start that raises one of ``failed`` is logged and tried again; any other error is
    logged with its traceback and tried again too: nothing ends the watch but a cancel."""
    failures = 0
    started = clock()
    while True:
        status = await process().wait()
        on_exit()
        if clock() - started >= STEADY_S:
            failures = 0
        log.error("the %s exited with status %s; restarting it", what, status)
        while True:
            await asyncio.sleep(RESTART_PAUSES_S[min(failures, len(RESTART_PAUSES_S) - 1)])
            failures += 1
            try:
                await spawn()
            except failed as exc:
                log.error("the %s did not start again: %s", what, exc)
            except Exception:
                log.exception("the %s did not start again", what)
            else:
                break
        started = clock()
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
