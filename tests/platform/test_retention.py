"""The background pruner, against a store that only records what it is asked to prune."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import cast

import pytest

from arrears_router.platform.retention import MAX_INTERVAL_S, Pruner
from arrears_router.store import Pruned, Store, StoreError

pytestmark = pytest.mark.anyio


class Prunes:
    """A store whose prunes return ``outcomes`` in turn (an exception is raised), then none."""

    def __init__(self, *outcomes: Pruned | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[datetime, datetime, int]] = []
        self.called = asyncio.Event()

    async def prune(self, *, done_before: datetime, quarantine_before: datetime,
                    limit: int = 500) -> Pruned:
        self.calls.append((done_before, quarantine_before, limit))
        self.called.set()
        outcome = self.outcomes.pop(0) if self.outcomes else Pruned(deliveries=0, quarantine=0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def pruner(store: Prunes, keep_done: timedelta = timedelta(days=30),
           keep_quarantine: timedelta = timedelta(days=90), batch: int = 3) -> Pruner:
    return Pruner(cast(Store, store), keep_done=keep_done, keep_quarantine=keep_quarantine,
                  batch=batch)


@pytest.mark.parametrize(("done", "quarantine", "interval"), [
    (timedelta(days=30), timedelta(days=90), MAX_INTERVAL_S),
    (timedelta(seconds=1), timedelta(days=90), 0.5),
    (timedelta(days=30), timedelta(seconds=40), 20.0),
])
def test_rounds_are_a_minute_apart_or_half_the_shortest_age(
    done: timedelta, quarantine: timedelta, interval: float,
) -> None:
    assert pruner(Prunes(), done, quarantine).interval == interval


async def test_a_round_prunes_batches_until_less_than_a_batch_is_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Prunes(Pruned(deliveries=3, quarantine=1), Pruned(deliveries=1, quarantine=3),
                   Pruned(deliveries=2, quarantine=0), Pruned(deliveries=3, quarantine=3))
    with caplog.at_level(logging.INFO, "arrears_router.retention"):
        assert await pruner(store).round() == Pruned(deliveries=6, quarantine=4)
    assert len(store.calls) == 3
    [(done_before, quarantine_before, limit)] = set(store.calls)  # one cutoff a round
    assert (done_before - quarantine_before, limit) == (timedelta(days=60), 3)
    assert [r.getMessage() for r in caplog.records] == [
        "retention: pruned 6 done deliveries (older than 30d) and 4 quarantined requests"
        " (not seen for 90d)"]


async def test_a_round_with_nothing_to_prune_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "arrears_router.retention"):
        assert await pruner(Prunes()).round() == Pruned(deliveries=0, quarantine=0)
    assert caplog.records == []


async def test_a_store_error_is_a_warning_and_the_next_round_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Prunes(Pruned(deliveries=3, quarantine=0), StoreError("disk full"),
                   Pruned(deliveries=2, quarantine=0))
    running = pruner(store, keep_done=timedelta(seconds=1))
    running.interval = 0.01
    with caplog.at_level(logging.INFO, "arrears_router.retention"):
        task = asyncio.create_task(running.run())
        while len(store.calls) < 3:
            store.called.clear()
            await asyncio.wait_for(store.called.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages[:3] == [
        ("WARNING", "retention: cannot prune now, trying again in 0.01 s: disk full"),
        ("INFO", "retention: pruned 3 done deliveries (older than 1s) and 0 quarantined"
                 " requests (not seen for 90d)"),
        ("INFO", "retention: pruned 2 done deliveries (older than 1s) and 0 quarantined"
                 " requests (not seen for 90d)"),
    ]
