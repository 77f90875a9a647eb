"""Deadlines: a call that outlives its timeout is cancelled, one that ends in time is not,
and a cancellation from elsewhere is never mistaken for a timeout."""

from __future__ import annotations

import asyncio

import pytest

from arrears_router.platform.deadlines import Deadlines, Watch

pytestmark = pytest.mark.anyio

SHORT = 0.01
LONG = 60.0


async def call(deadlines: Deadlines, seconds: float, work: asyncio.Event) -> tuple[str, Watch]:
    """Wait for ``work`` under a deadline, as the dispatcher calls a plugin."""
    watch = deadlines.watch(seconds)
    try:
        await work.wait()
    except asyncio.CancelledError:
        if not watch.expired:
            raise
        return "timed out", watch
    finally:
        deadlines.end(watch)
    return "done", watch


async def test_a_call_that_outlives_its_timeout_is_cancelled_as_a_timeout() -> None:
    outcome, watch = await call(Deadlines(), SHORT, asyncio.Event())
    assert outcome == "timed out"
    assert watch.expired
    assert watch.task.cancelling() == 0  # handled: the task is not left cancelling


async def test_a_call_that_ends_in_time_is_left_alone() -> None:
    deadlines = Deadlines()
    work = asyncio.Event()
    work.set()
    outcome, watch = await call(deadlines, SHORT, work)
    assert outcome == "done"
    assert not watch.expired
    await call(deadlines, SHORT, asyncio.Event())  # the timer still serves later calls


async def test_each_timeout_keeps_its_own_clock() -> None:
    deadlines = Deadlines()
    slow_work = asyncio.Event()
    slow = asyncio.create_task(call(deadlines, LONG, slow_work))
    await asyncio.sleep(0)  # the long call begins first
    outcome, _ = await call(deadlines, SHORT, asyncio.Event())
    assert outcome == "timed out"  # a later, shorter timeout is not held behind the long one
    assert not slow.done()
    slow_work.set()
    assert (await slow)[0] == "done"


async def test_only_overdue_calls_are_cancelled() -> None:
    deadlines = Deadlines()
    works = [asyncio.Event() for _ in range(5)]
    calls = [asyncio.create_task(call(deadlines, SHORT, work)) for work in works]
    await asyncio.sleep(0)
    for work in works[::2]:  # these finish at once, before their deadline
        work.set()
    outcomes = [outcome for outcome, _ in await asyncio.gather(*calls)]
    assert outcomes == ["done", "timed out", "done", "timed out", "done"]


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    deadlines = Deadlines()
    started = asyncio.Event()

    async def cancelled_call() -> tuple[str, Watch]:
        started.set()
        return await call(deadlines, LONG, asyncio.Event())

    task = asyncio.create_task(cancelled_call())
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
