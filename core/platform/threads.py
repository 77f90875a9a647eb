"""Threads of a plugin's own for its sync hooks.

asyncio's default executor is shared: a sync plugin whose calls hang past their timeout
would keep its threads and starve every other plugin, and Python waits for those threads at
exit. Each plugin runs on threads of its own instead, at most its ``concurrency`` of them, as
daemons: a hung call holds only its own plugin's threads, and never holds up a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["PluginThreads"]

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context,
             Callable[..., Any], tuple[Any, ...]]


class PluginThreads:
    def __init__(self, plugin: str, size: int) -> None:
        self._plugin = plugin
        self._size = size
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        """Threads free and promised to no call."""
        self._unserved = 0
        """Calls queued that no thread was free for: the next thread to finish takes one."""
        self._lock = threading.Lock()

    def run(self, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``function(*args)`` on one of the plugin's threads, in the caller's context (as
        ``asyncio.to_thread``: what it logs carries the delivery's keys); a call waits for a
        free one. Cancelling the future leaves a call already running to finish on its thread.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        # A free thread is promised to this call now, not when it takes the call: two calls
        # made in one turn of the loop would otherwise both count on the same idle thread.
        with self._lock:
            if self._idle:
                self._idle -= 1
            elif len(self._threads) < self._size:
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"plugin-{self._plugin}-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
            else:
                self._unserved += 1
        self._jobs.put((loop, future, contextvars.copy_context(), function, args))
        return future

    def shutdown(self) -> None:
        """Let the threads end once idle; one stuck in a call is left behind, as a daemon."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, context, function, args = job
            if not future.cancelled():  # its caller gave up while it queued
                try:
                    outcome: tuple[Any, BaseException | None] = (context.run(function, *args),
                                                                 None)
                except BaseException as exc:  # handed to the caller, whatever it is
                    outcome = (None, exc)
                with contextlib.suppress(RuntimeError):  # the loop closed while it hung
                    loop.call_soon_threadsafe(_settle, future, *outcome)
            with self._lock:
                if self._unserved:  # this thread's next call is one already waiting
                    self._unserved -= 1
                else:
                    self._idle += 1


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():  # cancelled meanwhile, by a timeout
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
