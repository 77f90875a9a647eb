"""The store contract for retention and the done counts: every backend must pass it.

Only the public :class:`core.store.Store` methods are used, so the suite runs unchanged
against every backend the ``store`` fixture lists. A ``done_before`` in the future prunes
what is done now.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from arrears_router.store import (
    DeliveryStatus,
    Mode,
    PluginRoute,
    Pruned,
    Quarantined,
    Store,
)
from tests.store.records import entry
from tests.store.test_deliveries_contract import (
    PAST_TINY,
    TINY,
    accept,
    configure,
    dead,
    done,
    retry,
    state,
    want,
)

pytestmark = pytest.mark.anyio

LATER = timedelta(minutes=1)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC)


async def prune(store: Store, *, done_before: datetime | None = None,
                quarantine_before: datetime = LONG_AGO, limit: int = 500) -> Pruned:
    return await store.prune(done_before=done_before or now() + LATER,
                             quarantine_before=quarantine_before, limit=limit)


async def counts(store: Store, plugin: str) -> tuple[int, int, int]:
    found = state(await store.plugin_states(), plugin)
    numbers = (found.pending, found.done, found.dead)
    # Plain ints, as `plugins list --json` prints them: not a database's decimal type.
    assert [type(n) for n in numbers] == [int, int, int], numbers
    return numbers


async def finish_all(store: Store, plugin: str, outcome: str = "done") -> None:
    """Claim every due delivery of ``plugin`` and record ``outcome`` for each."""
    claimed = await store.claim(want(plugin, limit=1000))
    results = {"done": done, "dead": dead}[outcome]
    assert all(await store.finish([results(d) for d in claimed]))


async def test_done_deliveries_are_pruned_and_payments_pending_and_dead_kept(
    store: Store,
) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED), PluginRoute("bad", Mode.ENABLED),
                    PluginRoute("held", Mode.PAUSED))
    await accept(store, "T1", "T2")
    await finish_all(store, "ok")
    await finish_all(store, "bad", "dead")
    assert await prune(store) == Pruned(deliveries=2, quarantine=0)
    assert sorted((d.plugin, d.status) for d in await store.deliveries()) == [
        ("bad", DeliveryStatus.DEAD), ("bad", DeliveryStatus.DEAD),
        ("held", DeliveryStatus.PENDING), ("held", DeliveryStatus.PENDING)]
    assert sorted(e.payment.transaction_id for e in await store.events()) == ["T1", "T2"]
    assert [d.plugin for d in await store.deliveries_by_transaction("T1")] == ["bad", "held"]
    assert await prune(store) == Pruned(deliveries=0, quarantine=0)


async def test_only_deliveries_done_before_the_cutoff_are_pruned(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED))
    await accept(store, "T1")
    await finish_all(store, "ok")
    assert await prune(store, done_before=now() - LATER) == Pruned(deliveries=0, quarantine=0)
    assert len(await store.deliveries()) == 1


async def test_a_delivery_done_recently_is_kept_however_old_it_is(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED))
    await accept(store, "T1")
    made = now()
    await asyncio.sleep(PAST_TINY)
    await finish_all(store, "ok")
    # Made before the cutoff, but done after it: kept.
    assert await prune(store, done_before=made + timedelta(seconds=TINY)) == Pruned(
        deliveries=0, quarantine=0)
    assert await prune(store) == Pruned(deliveries=1, quarantine=0)


async def test_a_limit_is_honoured_oldest_first(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED))
    await accept(store, "T1", "T2", "T3", "T4", "T5")
    await finish_all(store, "ok")
    assert await prune(store, limit=2) == Pruned(deliveries=2, quarantine=0)
    assert sorted(d.transaction_id for d in await store.deliveries()) == ["T3", "T4", "T5"]
    assert [(await prune(store, limit=2)).deliveries for _ in range(3)] == [2, 1, 0]


async def test_quarantine_is_pruned_by_when_a_request_was_last_seen(store: Store) -> None:
    old = now() - timedelta(days=100)
    assert await store.quarantine(entry(b"old", received_at=old)) is Quarantined.KEPT
    assert await store.quarantine(entry(b"again", received_at=old)) is Quarantined.KEPT
    assert await store.quarantine(entry(b"again")) is Quarantined.AGAIN  # seen just now
    assert await store.quarantine(entry(b"new")) is Quarantined.KEPT
    pruned = await prune(store, quarantine_before=now() - timedelta(days=90))
    assert pruned == Pruned(deliveries=0, quarantine=1)
    assert sorted(q.body for q in await store.quarantined()) == [b"again", b"new"]
    stats = await store.quarantine_stats()
    assert (stats.rows, stats.bytes) == (2, len(b"again") + len(b"new"))


async def test_a_quarantine_limit_is_honoured(store: Store) -> None:
    for n in range(3):
        await store.quarantine(entry(f"q{n}".encode()))
    assert await prune(store, quarantine_before=now() + LATER, limit=2) == Pruned(
        deliveries=0, quarantine=2)
    assert [q.body for q in await store.quarantined()] == [b"q2"]


async def test_done_counts_survive_pruning(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED), PluginRoute("bad", Mode.ENABLED))
    await accept(store, "T1", "T2", "T3")
    await finish_all(store, "ok")
    await finish_all(store, "bad", "dead")
    await accept(store, "T4")
    assert await counts(store, "ok") == (1, 3, 0)
    assert await prune(store) == Pruned(deliveries=3, quarantine=0)
    assert await counts(store, "ok") == (1, 3, 0)
    assert await counts(store, "bad") == (1, 0, 3)


async def test_a_replayed_done_delivery_is_pending_again_then_done_again(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED))
    await accept(store, "T1", "T2")
    await finish_all(store, "ok")
    [newest, _] = await store.deliveries()
    assert await store.replay(delivery_id=newest.id) == 1
    assert await counts(store, "ok") == (1, 1, 0)
    assert await store.replay(delivery_id=newest.id) == 0  # pending: nothing replayed
    assert await counts(store, "ok") == (1, 1, 0)
    await finish_all(store, "ok")
    assert await counts(store, "ok") == (0, 2, 0)
    record = await store.delivery(newest.id)
    assert record is not None and record.replays == 1


async def test_replaying_dead_ones_changes_no_done_count(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED))
    await accept(store, "T1", "T2")
    await finish_all(store, "ok", "dead")
    assert await store.replay(plugin="ok") == 2
    assert await counts(store, "ok") == (2, 0, 0)
    await finish_all(store, "ok")
    assert await counts(store, "ok") == (0, 2, 0)


async def test_counts_after_batches_mixing_done_retry_and_dead(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, *(f"T{n}" for n in range(6)))
    claimed = await store.claim(want("a", "b"))
    a = [d for d in claimed if d.plugin == "a"]
    b = [d for d in claimed if d.plugin == "b"]
    # One batch for both plugins: a 3 done, 2 retried, 1 dead; b 1 done, 5 dead.
    results = ([done(d) for d in a[:3]] + [retry(d, 0) for d in a[3:5]] + [dead(a[5])]
               + [done(b[0])] + [dead(d) for d in b[1:]])
    assert all(await store.finish(results))
    assert await counts(store, "a") == (2, 3, 1)
    assert await counts(store, "b") == (0, 1, 5)
    # The retried ones: one done, one dead, with a done one of b replayed meanwhile.
    [again_done, again_dead] = await store.claim(want("a"))
    assert await store.replay(delivery_id=b[0].id) == 1
    assert all(await store.finish([done(again_done), dead(again_dead)]))
    assert await counts(store, "a") == (0, 4, 2)
    assert await counts(store, "b") == (1, 0, 5)


async def test_an_outcome_whose_claim_lapsed_is_not_counted(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED))
    await accept(store, "T1")
    [first] = await store.claim(want("ok", lease=TINY))
    await asyncio.sleep(PAST_TINY)
    [second] = await store.claim(want("ok"))
    assert await store.finish([done(first)]) == [False]
    assert await counts(store, "ok") == (1, 0, 0)
    assert await store.finish([done(second)]) == [True]
    assert await counts(store, "ok") == (0, 1, 0)


async def test_pruners_at_once_prune_each_row_once(store: Store) -> None:
    await configure(store, PluginRoute("ok", Mode.ENABLED))
    await accept(store, *(f"T{n}" for n in range(20)))
    await finish_all(store, "ok")
    pruned = await asyncio.gather(*(prune(store, limit=3) for _ in range(10)))
    assert sum(p.deliveries for p in pruned) == 20
    assert await store.deliveries() == []
    assert await counts(store, "ok") == (0, 20, 0)
