"""The store contract for what the admin API reads: each delivery's bounded history of
attempts, each plugin's oldest pending delivery, payments searched and deliveries listed a
page at a time. Every backend must pass it (the ``store`` fixture lists them).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from arrears_router.payment import CST
from arrears_router.store import (
    ATTEMPTS_KEPT,
    AttemptRecord,
    ClaimedDelivery,
    DeliveryRecord,
    DeliveryResult,
    DeliveryStatus,
    EventRecord,
    Mode,
    NewEvent,
    PluginRoute,
    Store,
    open_store,
    postgres_schema,
    sqlite_schema,
)
from arrears_router.testkit import RouterFactory
from tests.sample_plugins import Recorder
from tests.store.records import event, payment
from tests.store.test_deliveries_contract import accept, configure, done, state, want

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def outcome(d: ClaimedDelivery, status: DeliveryStatus, error: str = "",
            duration_s: float = 0.5) -> DeliveryResult:
    return DeliveryResult(id=d.id, token=d.token, status=status, error=error,
                          duration_s=duration_s)


def history(attempts: Sequence[AttemptRecord]) -> list[tuple[int, DeliveryStatus, str]]:
    return [(a.attempt, a.status, a.error) for a in attempts]


async def fail_then(store: Store, plugin: str, failures: int, last: DeliveryStatus
                    ) -> ClaimedDelivery:
    """Claim the plugin's one delivery ``failures`` times, each retried at once, then once
    more with ``last``; the last claim."""
    for n in range(1, failures + 1):
        [claimed] = await store.claim(want(plugin))
        assert await store.finish([outcome(claimed, DeliveryStatus.PENDING, f"busy {n}")])
    [claimed] = await store.claim(want(plugin))
    assert await store.finish([outcome(claimed, last, "" if last is DeliveryStatus.DONE
                                       else "gave up")])
    return claimed


# -- attempts


async def test_each_recorded_outcome_is_an_attempt_newest_first(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [first] = await store.claim(want("a"))
    await store.finish([outcome(first, DeliveryStatus.PENDING, "busy", duration_s=1.25)])
    [second] = await store.claim(want("a"))
    await store.finish([outcome(second, DeliveryStatus.DONE, duration_s=0.75)])
    attempts = await store.attempts(first.id)
    assert history(attempts) == [(2, DeliveryStatus.DONE, ""),
                                 (1, DeliveryStatus.PENDING, "busy")]
    assert [a.duration_s for a in attempts] == [0.75, 1.25]
    assert attempts[0].at >= attempts[1].at
    assert all(a.at.tzinfo is not None for a in attempts)


async def test_a_dead_outcome_is_kept_with_its_error(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    claimed = await fail_then(store, "a", 1, DeliveryStatus.DEAD)
    assert history(await store.attempts(claimed.id)) == [
        (2, DeliveryStatus.DEAD, "gave up"), (1, DeliveryStatus.PENDING, "busy 1")]


async def test_a_delivery_keeps_only_its_latest_attempts(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    claimed = await fail_then(store, "a", ATTEMPTS_KEPT + 2, DeliveryStatus.DONE)
    attempts = await store.attempts(claimed.id)
    last = ATTEMPTS_KEPT + 3
    assert [a.attempt for a in attempts] == list(range(last, last - ATTEMPTS_KEPT, -1))
    assert history(attempts)[:2] == [(last, DeliveryStatus.DONE, ""),
                                     (last - 1, DeliveryStatus.PENDING, f"busy {last - 1}")]


async def test_outcomes_finished_together_are_each_their_deliveries_attempt(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, "T1", "T2")
    claimed = await store.claim(want("a", "b"))
    assert len(claimed) == 4
    await store.finish([outcome(d, DeliveryStatus.DONE, duration_s=d.id / 10)
                        for d in claimed])
    for d in claimed:
        [attempt] = await store.attempts(d.id)
        assert (attempt.attempt, attempt.status, attempt.duration_s) == (
            1, DeliveryStatus.DONE, d.id / 10)


async def test_a_lapsed_claims_refused_outcome_is_no_attempt(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [lapsed] = await store.claim(want("a", lease=0))  # lapsed as soon as it is made
    [again] = await store.claim(want("a"))
    assert await store.finish([outcome(lapsed, DeliveryStatus.DEAD, "late")]) == [False]
    assert await store.attempts(lapsed.id) == []
    assert await store.finish([outcome(again, DeliveryStatus.DONE)]) == [True]
    assert history(await store.attempts(again.id)) == [(2, DeliveryStatus.DONE, "")]


async def test_a_replayed_deliverys_new_attempts_come_first(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    claimed = await fail_then(store, "a", 2, DeliveryStatus.DEAD)
    assert await store.replay(delivery_id=claimed.id) == 1
    [replayed] = await store.claim(want("a"))
    await store.finish([done(replayed)])
    # Numbered afresh, the new first attempt takes the old first one's place.
    assert history(await store.attempts(claimed.id)) == [
        (1, DeliveryStatus.DONE, ""), (3, DeliveryStatus.DEAD, "gave up"),
        (2, DeliveryStatus.PENDING, "busy 2")]


async def test_a_pruned_deliverys_attempts_go_with_it(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, "T1")
    claimed = {d.plugin: d for d in await store.claim(want("a", "b"))}
    await store.finish([done(claimed["a"]), outcome(claimed["b"], DeliveryStatus.DEAD, "no")])
    pruned = await store.prune(done_before=datetime.now(UTC) + timedelta(minutes=1),
                               quarantine_before=T0)
    assert pruned.deliveries == 1
    assert await store.attempts(claimed["a"].id) == []
    assert history(await store.attempts(claimed["b"].id)) == [(1, DeliveryStatus.DEAD, "no")]


async def test_an_unknown_delivery_has_no_attempts(store: Store) -> None:
    assert await store.attempts(12345) == []


# -- the oldest pending delivery


async def test_oldest_pending_is_when_the_oldest_pending_delivery_was_made(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.PAUSED))
    assert state(await store.plugin_states(), "a").oldest_pending_at is None
    await accept(store, "T1", "T2")
    made = {(d.plugin, d.transaction_id): d for d in await store.deliveries()}
    [first] = await store.claim(want("a", limit=1))
    await store.finish([outcome(first, DeliveryStatus.PENDING, "busy")])  # still pending
    states = await store.plugin_states()
    assert state(states, "a").oldest_pending_at == made["a", "T1"].created_at
    assert state(states, "b").oldest_pending_at == made["b", "T1"].created_at
    [again] = await store.claim(want("a", limit=1))
    assert again.id == first.id
    await store.finish([done(again)])
    assert state(await store.plugin_states(), "a").oldest_pending_at == made[
        "a", "T2"].created_at
    [last] = await store.claim(want("a", limit=1))
    await store.finish([outcome(last, DeliveryStatus.DEAD, "no")])
    assert state(await store.plugin_states(), "a").oldest_pending_at is None


# -- payments searched


async def store_payments(store: Store, *specs: tuple[str, dict[str, str]]
                         ) -> dict[str, EventRecord]:
    """Store payments received a minute apart from T0, in order; their records by
    transaction_id."""
    for n, (transaction_id, changes) in enumerate(specs):
        new = event(payment(transaction_id, **changes))
        await store.accept(msgspec.structs.replace(new, received_at=T0 + timedelta(minutes=n)))
    return {e.payment.transaction_id: e for e in await store.events(limit=len(specs))}


def ids(records: Sequence[EventRecord | DeliveryRecord]) -> list[str]:
    return [r.transaction_id if isinstance(r, DeliveryRecord) else r.payment.transaction_id
            for r in records]


async def test_payments_are_found_by_each_filter_newest_first(store: Store) -> None:
    await store_payments(
        store,
        ("T1", {"out_user_id": "rider-1", "repay_no": "R-A"}),
        ("T2", {"out_user_id": "rider-2", "repay_no": "R-B"}),
        ("T3", {"out_user_id": "rider-1", "repay_no": "R-C"}),
        ("T4", {"out_user_id": "", "repay_no": "R-A"}),
    )
    assert ids(await store.search_events()) == ["T4", "T3", "T2", "T1"]
    assert ids(await store.search_events(transaction_id="T2")) == ["T2"]
    assert ids(await store.search_events(out_user_id="rider-1")) == ["T3", "T1"]
    assert ids(await store.search_events(repay_no="R-A")) == ["T4", "T1"]
    assert ids(await store.search_events(out_user_id="rider-1", repay_no="R-A")) == ["T1"]
    assert await store.search_events(transaction_id="T2", out_user_id="rider-1") == []
    assert await store.search_events(out_user_id="") == []  # no rider named is no rider
    assert await store.search_events(transaction_id="T9") == []


async def test_a_payment_found_is_the_payment_stored(store: Store) -> None:
    stored = await store_payments(store, ("T1", {"out_user_id": "rider-1"}))
    [found] = await store.search_events(out_user_id="rider-1")
    assert found == stored["T1"]
    assert found.payment == payment("T1", out_user_id="rider-1")


async def test_payments_are_found_by_the_time_they_were_received(store: Store) -> None:
    await store_payments(store, *[(f"T{n}", {}) for n in range(5)])  # T0 + n minutes
    minute = timedelta(minutes=1)
    assert ids(await store.search_events(since=T0 + minute)) == ["T4", "T3", "T2", "T1"]
    assert ids(await store.search_events(until=T0 + 2 * minute)) == ["T1", "T0"]
    assert ids(await store.search_events(since=T0 + minute, until=T0 + 3 * minute)) == [
        "T2", "T1"]
    # A bound in another time zone is the same instant.
    assert ids(await store.search_events(since=(T0 + 4 * minute).astimezone(CST))) == ["T4"]


Page = Sequence[EventRecord] | Sequence[DeliveryRecord]


async def pages(read: Callable[[int | None], Awaitable[Page]]) -> list[list[str]]:
    """The transaction_ids of each page ``read(before)`` gives, the cursor (``before``) the
    last id of the page before, until a page is empty."""
    found: list[list[str]] = []
    before: int | None = None
    while page := await read(before):
        found.append(ids(page))
        before = page[-1].id
    return found


async def test_payments_are_read_a_page_at_a_time_below_the_last_id_read(store: Store) -> None:
    await store_payments(store, *[(f"T{n}", {"out_user_id": "rider-1" if n % 2 else ""})
                                  for n in range(7)])
    assert await pages(lambda before: store.search_events(limit=3, before=before)) == [
        ["T6", "T5", "T4"], ["T3", "T2", "T1"], ["T0"]]
    assert await pages(lambda before: store.search_events(
        out_user_id="rider-1", limit=2, before=before)) == [["T5", "T3"], ["T1"]]
    assert await pages(lambda before: store.search_events(
        since=T0 + timedelta(minutes=2), limit=2, before=before)) == [
        ["T6", "T5"], ["T4", "T3"], ["T2"]]


# -- deliveries listed


async def test_deliveries_are_read_a_page_at_a_time_with_their_filters(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, *[f"T{n}" for n in range(6)])
    claimed = {d.payment.transaction_id: d for d in await store.claim(want("a"))}
    await store.finish([outcome(claimed[f"T{n}"], DeliveryStatus.DEAD, "no")
                        for n in (0, 2, 3, 5)])
    await store.finish([done(claimed[f"T{n}"]) for n in (1, 4)])

    def listed(plugin: str | None = None, status: DeliveryStatus | None = None
               ) -> Callable[[int | None], Awaitable[Page]]:
        return lambda before: store.deliveries(plugin=plugin, status=status, limit=2,
                                               before=before)

    assert await pages(listed("a", DeliveryStatus.DEAD)) == [["T5", "T3"], ["T2", "T0"]]
    assert await pages(listed("a", DeliveryStatus.DONE)) == [["T4", "T1"]]
    assert await pages(listed("b", DeliveryStatus.PENDING)) == [
        ["T5", "T4"], ["T3", "T2"], ["T1", "T0"]]
    assert await pages(listed(status=DeliveryStatus.DEAD)) == [["T5", "T3"], ["T2", "T0"]]
    assert await pages(listed("a")) == [["T5", "T4"], ["T3", "T2"], ["T1", "T0"]]
    assert [len(page) for page in await pages(listed())] == [2] * 6


async def test_deliveries_are_found_by_the_time_they_were_made(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    for n in range(4):  # a transaction each: each made at a later time
        await accept(store, f"T{n}")
    made = {d.transaction_id: d.created_at for d in await store.deliveries()}
    assert made["T0"] < made["T1"] < made["T2"] < made["T3"]

    def between(earlier: str, later: str) -> datetime:
        return made[earlier] + (made[later] - made[earlier]) / 2

    since, until = between("T0", "T1"), between("T2", "T3")
    assert ids(await store.deliveries(since=since)) == ["T3", "T2", "T1"]
    assert ids(await store.deliveries(until=until)) == ["T2", "T1", "T0"]
    assert ids(await store.deliveries(since=since, until=until)) == ["T2", "T1"]
    for status in DeliveryStatus:  # on each status's own path through the indexes
        expected = ["T2", "T1"] if status is DeliveryStatus.PENDING else []
        assert ids(await store.deliveries(plugin="a", status=status, since=since,
                                          until=until)) == expected
    [dead] = await store.claim(want("a", limit=1))
    await store.finish([outcome(dead, DeliveryStatus.DEAD, "no")])
    assert ids(await store.deliveries(plugin="a", status=DeliveryStatus.DEAD,
                                      until=until)) == ["T0"]
    assert await store.deliveries(plugin="a", status=DeliveryStatus.DEAD, since=since) == []


# -- a store made before these reads


def _before_these_reads(migrations: Sequence[str]) -> Sequence[str]:
    """The migrations that come before the one that added these reads."""
    return migrations[:next(n for n, script in enumerate(migrations)
                            if "delivery_attempts" in script)]


_OLD_INSERT = (
    "INSERT INTO events (appid, mch_id, transaction_id, digest, received_at, payment, envelope)"
    " VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0})"
)


def store_before_these_reads(url: str, new: NewEvent) -> None:
    """Store the payment of ``new`` as the code of the schema before these reads did, in a
    new store at ``url`` migrated up to that schema."""
    p = new.payment
    path = sqlite_schema.file_of(url)
    if path is not None:
        with contextlib.closing(sqlite_schema.connect(path)) as db:
            sqlite_schema.migrate(db, _before_these_reads(sqlite_schema.MIGRATIONS))
            db.execute(_OLD_INSERT.format("?"), (
                p.appid, p.mch_id, p.transaction_id, new.digest,
                new.received_at.astimezone(UTC).isoformat(timespec="microseconds"),
                new.payment_json, new.envelope))
        return
    with postgres_schema.connect(url, autocommit=True) as pg:
        postgres_schema.migrate(pg, migrations=_before_these_reads(postgres_schema.MIGRATIONS))
        pg.execute(_OLD_INSERT.format("%s"), (
            p.appid, p.mch_id, p.transaction_id, new.digest, new.received_at,
            new.payment_json, new.envelope))


async def test_payments_stored_before_the_migration_are_found(store_url: str) -> None:
    store_before_these_reads(store_url, event(payment("T1", out_user_id="rider-1",
                                                      repay_no="R-1")))
    migrated = open_store(store_url)
    await migrated.open()
    try:
        assert ids(await migrated.search_events(out_user_id="rider-1")) == ["T1"]
        assert ids(await migrated.search_events(repay_no="R-1")) == ["T1"]
        [found] = await migrated.search_events(transaction_id="T1")
        assert found.payment == payment("T1", out_user_id="rider-1", repay_no="R-1")
    finally:
        await migrated.close()


# -- through the dispatcher


def test_a_dispatched_attempt_is_kept_with_its_wall_time(
    arrears_router: RouterFactory, tmp_path: Path,
) -> None:
    router = arrears_router({"a": {"path": str(tmp_path / "log"), "fail_attempts": 1}},
                            classes={"a": Recorder})
    report = router.pay()
    report.assert_done("a")

    async def attempts() -> list[AttemptRecord]:
        reader = open_store(router.config.store.url, readonly=True)
        await reader.open()
        try:
            return await reader.attempts(report.deliveries["a"].id)
        finally:
            await reader.close()

    found = asyncio.run(attempts())
    assert [(a.attempt, a.status) for a in found] == [
        (2, DeliveryStatus.DONE), (1, DeliveryStatus.PENDING)]
    assert "RuntimeError: flaky" in found[1].error
    assert all(a.duration_s > 0 for a in found)  # measured, not the default of none
