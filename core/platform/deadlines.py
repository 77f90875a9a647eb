"""Timeouts for many calls at once, at a fraction of ``asyncio.timeout``'s cost.

``asyncio.timeout`` schedules a timer for each call (a heap push, and more to cancel it): at
thousands of plugin calls a second, the dispatcher's largest cost. Calls under one timeout
end their deadlines in the order they begin, so each distinct timeout needs only a queue of
its calls and one timer, set for the oldest.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Deadlines", "Watch"]


class Watch:
    """One call's deadline: once it passes, the task running the call is cancelled."""

    __slots__ = ("deadline", "ended", "expired", "task", "timeout")

    def __init__(self, timeout: float, deadline: float, task: asyncio.Task[object]) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.task = task
        self.ended = False
        self.expired = False
        """Its task was cancelled for it: a ``CancelledError`` it raised means a timeout."""


class Deadlines:
    def __init__(self) -> None:
        self._queues: dict[float, deque[Watch]] = {}
        self._timed: set[float] = set()
        """The timeouts whose queue has a timer set."""

    def watch(self, timeout: float) -> Watch:
        """Cancel the current task ``timeout`` seconds from now, unless :meth:`end` comes
        first. The caller tells a timeout from other cancellations by ``Watch.expired``.
        """
        task = asyncio.current_task()
        assert task is not None, "a deadline is for a task"
        loop = task.get_loop()
        watch = Watch(timeout, loop.time() + timeout, task)
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = deque()
        queue.append(watch)
        if timeout not in self._timed:
            self._timed.add(timeout)
            loop.call_at(watch.deadline, self._expire, loop, timeout)
        return watch

    def end(self, watch: Watch) -> None:
        """The call is over: its deadline no longer applies."""
        watch.ended = True
        if watch.expired:  # the cancellation was ours, and is handled
            watch.task.uncancel()
        queue = self._queues[watch.timeout]
        while queue and queue[0].ended:  # calls mostly end in order: the queue stays short
            queue.popleft()

    def _expire(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        queue = self._queues[timeout]
        now = loop.time()
        while queue and (queue[0].ended or queue[0].deadline <= now):
            watch = queue.popleft()
            if not watch.ended:
                watch.expired = True
                watch.task.cancel()
        if queue:
            loop.call_at(queue[0].deadline, self._expire, loop, timeout)
        else:
            self._timed.discard(timeout)
