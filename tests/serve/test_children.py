"""``serve``'s watch over its children: restarted whenever they die, never in a tight loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from arrears_router.serve import children
from arrears_router.serve.children import RESTART_PAUSES_S, STEADY_S, keep_running

pytestmark = pytest.mark.anyio
log = logging.getLogger("test.children")


class Child:
    """A process that has exited, after running ``ran`` seconds of the fake clock."""

    def __init__(self, clock: list[float], ran: float) -> None:
        self.clock, self.ran = clock, ran

    async def wait(self) -> int:
        self.clock[0] += self.ran
        return 1


async def watch(monkeypatch: pytest.MonkeyPatch, lives: list[float | Exception],
                ) -> tuple[list[float], list[str]]:
    """Run ``keep_running`` over children living ``lives`` (a start failing where an error
    is given) until they are used up; the pauses it took, and what it started."""
    clock = [0.0]
    pauses: list[float] = []
    started: list[str] = []
    current: list[Child] = [Child(clock, lives.pop(0))]  # type: ignore[arg-type]

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if not lives:
            raise asyncio.CancelledError

    async def spawn() -> None:
        life = lives.pop(0)
        if isinstance(life, Exception):
            started.append(f"failed: {life}")
            raise life
        started.append(f"child living {life}")
        current[0] = Child(clock, life)

    monkeypatch.setattr(children.asyncio, "sleep", sleep)
    with pytest.raises(asyncio.CancelledError):
        await keep_running("child", log, lambda: current[0], spawn,  # type: ignore[arg-type, return-value]
                           clock=lambda: clock[0])
    return pauses, started


async def test_a_child_dying_young_waits_longer_each_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pauses, _ = await watch(monkeypatch, [0.1] * 7)
    assert pauses == [*RESTART_PAUSES_S, RESTART_PAUSES_S[-1], RESTART_PAUSES_S[-1]]


async def test_a_child_that_ran_steadily_is_started_again_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pauses, _ = await watch(monkeypatch, [0.1, 0.1, STEADY_S, 0.1])
    assert pauses == [RESTART_PAUSES_S[0], RESTART_PAUSES_S[1], RESTART_PAUSES_S[0],
                      RESTART_PAUSES_S[1]]


async def test_a_failed_start_is_tried_again_whatever_it_raised(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    lives: list[Any] = [0.1, OSError("no more processes"), ValueError("a bug"), STEADY_S]
    pauses, started = await watch(monkeypatch, lives)
    assert started == ["failed: no more processes", "failed: a bug",
                       f"child living {STEADY_S}"]
    assert pauses == [*RESTART_PAUSES_S[:3], RESTART_PAUSES_S[0]]  # then it ran steadily
    assert "the child did not start again: no more processes" in caplog.text
    assert "ValueError: a bug" in caplog.text  # the unexpected one, with its traceback
