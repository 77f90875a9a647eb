"""The store contract for the audit log, replays by plan, re-ingested quarantine and the
quarantine's pages: every backend must pass it.

Only the public :class:`core.store.Store` methods are used, but for a plan's bound (made
small here) and the schema a store had before the audit log (made with the migrations before
it, to see its mode changes moved).
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest

from arrears_router.store import (
    AuditAction,
    AuditEntry,
    DeliveryStatus,
    Mode,
    ModeChange,
    NoSuchPlan,
    NoSuchQuarantine,
    PlanAlreadyRun,
    PluginRoute,
    ReplayPlan,
    Store,
    StoreError,
    is_postgres_url,
    open_store,
)
from arrears_router.store.sqlite_schema import file_of
from tests.store.records import entry
from tests.store.test_deliveries_contract import (
    accept,
    configure,
    dead,
    done,
    want,
)

pytestmark = pytest.mark.anyio


def what(entries: list[AuditEntry]) -> list[tuple[AuditAction, str, str, str]]:
    return [(e.action, e.target, e.detail, e.actor) for e in entries]


async def dead_deliveries(store: Store, plugin: str, *transaction_ids: str) -> dict[str, int]:
    """Payments whose delivery to ``plugin`` (the only plugin) is dead: their ids by
    transaction_id."""
    await configure(store, PluginRoute(plugin, Mode.ENABLED))
    await accept(store, *transaction_ids)
    claimed = await store.claim(want(plugin))
    assert await store.finish([dead(d) for d in claimed]) == [True] * len(claimed)
    return {d.payment.transaction_id: d.id for d in claimed}


async def status_and_replays(store: Store, delivery_id: int) -> tuple[DeliveryStatus, int]:
    record = await store.delivery(delivery_id)
    assert record is not None
    return record.status, record.replays


# -- the audit log


async def test_mode_changes_are_entries_of_the_audit_log(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await store.set_mode("a", Mode.PAUSED, "alice")
    entries = await store.audit()
    assert what(entries) == [
        (AuditAction.MODE, "a", "enabled -> paused", "alice"),
        (AuditAction.MODE, "a", "- -> enabled", "config"),
    ]
    assert entries[0].id > entries[1].id and entries[0].at >= entries[1].at
    assert entries[0].at.utcoffset() is not None
    # The same changes, as mode_changes has always told them.
    assert await store.mode_changes() == [
        ModeChange(id=entries[0].id, plugin="a", from_mode=Mode.ENABLED, to_mode=Mode.PAUSED,
                   actor="alice", at=entries[0].at),
        ModeChange(id=entries[1].id, plugin="a", from_mode=None, to_mode=Mode.ENABLED,
                   actor="config", at=entries[1].at),
    ]


async def test_the_audit_log_pages_newest_first_by_id_and_filters_by_action(
    store: Store,
) -> None:
    ids = await dead_deliveries(store, "a", "T1")
    for mode in (Mode.PAUSED, Mode.ENABLED, Mode.PAUSED):
        await store.set_mode("a", mode, "ops")
    await store.replay(delivery_id=ids["T1"], actor="ops")
    everything = await store.audit()
    assert [e.action for e in everything] == [
        AuditAction.REPLAY, AuditAction.MODE, AuditAction.MODE, AuditAction.MODE,
        AuditAction.MODE]
    pages: list[AuditEntry] = []
    before = None
    while page := await store.audit(limit=2, before=before):
        assert len(page) <= 2
        pages += page
        before = page[-1].id
    assert pages == everything
    modes = await store.audit(action=AuditAction.MODE)
    assert modes == [e for e in everything if e.action is AuditAction.MODE]
    assert await store.audit(action=AuditAction.MODE, before=modes[1].id, limit=1) == [modes[2]]
    assert await store.audit(action=AuditAction.REINGEST) == []


# -- replay, audited


async def test_a_replay_is_audited_with_what_and_how_many(store: Store) -> None:
    ids = await dead_deliveries(store, "a", "T1", "T2", "T3")
    assert await store.replay(delivery_id=ids["T1"], actor="bob") == 1
    assert await store.replay(delivery_id=ids["T1"], actor="bob") == 0  # pending now
    long_ago = datetime(2000, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    assert await store.replay(plugin="a", since=long_ago) == 2
    assert await store.replay(until=long_ago, actor="carol") == 0
    assert what(await store.audit(action=AuditAction.REPLAY)) == [
        (AuditAction.REPLAY, "until=2000-01-01T00:00:00+00:00", "0 replayed", "carol"),
        (AuditAction.REPLAY, "plugin=a since=2000-01-01T00:00:00+00:00", "2 replayed", "cli"),
        (AuditAction.REPLAY, f"delivery={ids['T1']}", "0 replayed", "bob"),
        (AuditAction.REPLAY, f"delivery={ids['T1']}", "1 replayed", "bob"),
    ]


# -- replay plans


async def test_a_plan_replays_exactly_its_deliveries_still_dead(store: Store) -> None:
    ids = await dead_deliveries(store, "a", "T1", "T2")
    await accept(store, "T3")
    [t3] = await store.claim(want("a"))  # in flight while the plan is made
    plan = await store.plan_replay(plugin="a", since=None, until=None, actor="alice")
    assert (plan.actor, plan.plugin, plan.since, plan.until, plan.count) == (
        "alice", "a", None, None, 2)
    assert (plan.ran_at, plan.ran_by, plan.replayed) == (None, None, None)
    assert await store.replay_plan(plan.id) == plan

    assert await store.finish([dead(t3)]) == [True]  # dead only after the plan was made
    assert await store.replay(delivery_id=ids["T2"], actor="bob") == 1  # replayed meanwhile
    ran = await store.run_replay_plan(plan.id, "carol")
    assert (ran.count, ran.replayed, ran.ran_by) == (2, 1, "carol")
    assert ran.ran_at is not None and ran.ran_at >= plan.created_at
    assert await store.replay_plan(plan.id) == ran

    assert await status_and_replays(store, ids["T1"]) == (DeliveryStatus.PENDING, 1)
    assert await status_and_replays(store, ids["T2"]) == (DeliveryStatus.PENDING, 1)
    assert await status_and_replays(store, t3.id) == (DeliveryStatus.DEAD, 0)
    again = await store.claim(want("a"))  # due now, with a fresh count of attempts
    assert sorted((d.payment.transaction_id, d.attempt) for d in again) == [
        ("T1", 1), ("T2", 1)]
    assert what((await store.audit())[:3]) == [
        (AuditAction.REPLAY_RUN, str(plan.id), "1 of 2 replayed", "carol"),
        (AuditAction.REPLAY, f"delivery={ids['T2']}", "1 replayed", "bob"),
        (AuditAction.REPLAY_PLAN, str(plan.id), "2 dead: plugin=a", "alice"),
    ]


async def test_a_plan_keeps_the_dead_ones_created_in_its_window(store: Store) -> None:
    await dead_deliveries(store, "a", "T1")
    now = datetime.now(UTC)
    since, until = now - timedelta(hours=1), now + timedelta(hours=1)
    plan = await store.plan_replay(plugin=None, since=since, until=until, actor="ops")
    assert (plan.plugin, plan.since, plan.until, plan.count) == (None, since, until, 1)
    empty = await store.plan_replay(plugin=None, since=None, until=since, actor="ops")
    assert empty.count == 0
    assert (await store.run_replay_plan(empty.id, "ops")).replayed == 0
    [planned, *_] = await store.audit(action=AuditAction.REPLAY_PLAN)
    assert planned.detail == f"0 dead: until={since.isoformat()}"


async def test_a_plan_runs_once(store: Store) -> None:
    ids = await dead_deliveries(store, "a", "T1")
    plan = await store.plan_replay(plugin="a", since=None, until=None, actor="ops")
    first = await store.run_replay_plan(plan.id, "alice")
    [again] = await store.claim(want("a"))
    assert await store.finish([dead(again)]) == [True]  # dead again: a second run would replay
    with pytest.raises(PlanAlreadyRun, match=f"plan {plan.id} already ran at .+ by alice"
                       ) as raised:
        await store.run_replay_plan(plan.id, "bob")
    assert raised.value.plan == first
    assert await status_and_replays(store, ids["T1"]) == (DeliveryStatus.DEAD, 1)
    assert [e.actor for e in await store.audit(action=AuditAction.REPLAY_RUN)] == ["alice"]


async def test_of_two_runs_at_once_one_runs_the_plan(store: Store) -> None:
    ids = await dead_deliveries(store, "a", "T1", "T2")
    plan = await store.plan_replay(plugin="a", since=None, until=None, actor="ops")
    outcomes = await asyncio.gather(
        *(store.run_replay_plan(plan.id, f"ops{n}") for n in range(4)), return_exceptions=True)
    [ran] = [o for o in outcomes if isinstance(o, ReplayPlan)]
    assert all(isinstance(o, PlanAlreadyRun) for o in outcomes if o is not ran)
    assert ran.replayed == 2
    for delivery_id in ids.values():
        assert await status_and_replays(store, delivery_id) == (DeliveryStatus.PENDING, 1)


async def test_an_unknown_plan_is_none_and_cannot_run(store: Store) -> None:
    assert await store.replay_plan(404) is None
    with pytest.raises(NoSuchPlan, match="no replay plan 404") as raised:
        await store.run_replay_plan(404, "ops")
    assert isinstance(raised.value, LookupError)


async def test_a_plan_needs_a_filter(store: Store) -> None:
    await dead_deliveries(store, "a", "T1")
    with pytest.raises(StoreError, match="needs a filter"):
        await store.plan_replay(plugin=None, since=None, until=None, actor="ops")
    assert await store.audit(action=AuditAction.REPLAY_PLAN) == []


async def test_a_plan_holds_at_most_its_bound_or_is_not_made(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bound made small: the backend's own module checks it, the shared one says it.
    for module in (type(store).__module__, "arrears_router.store.batches"):
        monkeypatch.setattr(sys.modules[module], "REPLAY_PLAN_MAX", 2)
    ids = await dead_deliveries(store, "a", "T1", "T2", "T3")
    with pytest.raises(StoreError, match="more than 2 dead deliveries match plugin=a"):
        await store.plan_replay(plugin="a", since=None, until=None, actor="ops")
    assert await store.audit(action=AuditAction.REPLAY_PLAN) == []
    assert await store.replay(delivery_id=ids["T3"]) == 1
    plan = await store.plan_replay(plugin="a", since=None, until=None, actor="ops")
    assert plan.count == 2
    assert (await store.run_replay_plan(plan.id, "ops")).replayed == 2


# -- quarantine: re-ingested, and its pages


async def test_a_reingest_is_recorded_on_the_request_and_audited(store: Store) -> None:
    await store.quarantine(entry(b"q1"))
    [kept] = await store.quarantined()
    assert (kept.reingested_at, kept.reingest_errcode, kept.reingest_reason,
            kept.reingested_by) == (None, None, "", "")
    refused = await store.record_reingest(kept.id, errcode=40005, reason="still bad",
                                          actor="alice")
    assert (refused.reingest_errcode, refused.reingest_reason, refused.reingested_by) == (
        40005, "still bad", "alice")
    assert refused.reingested_at is not None and refused.reingested_at.utcoffset() is not None
    stored = await store.record_reingest(kept.id, errcode=0, reason="ok", actor="bob")
    assert (stored.reingest_errcode, stored.reingest_reason, stored.reingested_by) == (
        0, "ok", "bob")
    assert await store.quarantine_record(kept.id) == stored
    assert stored.body == kept.body and stored.hits == kept.hits
    assert what(await store.audit(action=AuditAction.REINGEST)) == [
        (AuditAction.REINGEST, str(kept.id), "errcode 0: ok", "bob"),
        (AuditAction.REINGEST, str(kept.id), "errcode 40005: still bad", "alice"),
    ]


async def test_an_unknown_request_cannot_be_reingested(store: Store) -> None:
    with pytest.raises(NoSuchQuarantine, match="no quarantined request 404") as raised:
        await store.record_reingest(404, errcode=0, reason="ok", actor="ops")
    assert isinstance(raised.value, LookupError)
    assert await store.audit() == []


async def test_the_quarantine_pages_newest_first_by_id_and_filters_by_errcode(
    store: Store,
) -> None:
    for n, errcode in enumerate((40004, 40005, 40004, 40009, 40004)):
        await store.quarantine(entry(f"q{n}".encode(), errcode))
    everything = await store.quarantined()
    assert [r.body for r in everything] == [b"q4", b"q3", b"q2", b"q1", b"q0"]
    first = await store.quarantined(limit=2)
    assert first == everything[:2]
    assert await store.quarantined(limit=2, before=first[-1].id) == everything[2:4]
    assert await store.quarantined(before=everything[-1].id) == []
    assert [r.body for r in await store.quarantined(errcode=40004)] == [b"q4", b"q2", b"q0"]
    assert [r.body for r in await store.quarantined(errcode=40004, before=everything[0].id,
                                                    limit=1)] == [b"q2"]


# -- the mode changes a store kept before the audit log


async def test_the_mode_changes_kept_before_move_into_the_audit_log(store_url: str) -> None:
    kept_before = [("a", None, "enabled", "config", "2026-11-25T01:00:00+00:00"),
                   ("a", "enabled", "paused", "ops@host", "2026-11-25T02:00:00+00:00")]
    _store_before_the_audit_log(store_url, kept_before)
    store = open_store(store_url)
    await store.open()
    try:
        at = [datetime.fromisoformat(row[4]) for row in kept_before]
        assert await store.mode_changes() == [
            ModeChange(id=2, plugin="a", from_mode=Mode.ENABLED, to_mode=Mode.PAUSED,
                       actor="ops@host", at=at[1]),
            ModeChange(id=1, plugin="a", from_mode=None, to_mode=Mode.ENABLED,
                       actor="config", at=at[0]),
        ]
        assert await store.audit() == [
            AuditEntry(id=2, at=at[1], actor="ops@host", action=AuditAction.MODE, target="a",
                       detail="enabled -> paused"),
            AuditEntry(id=1, at=at[0], actor="config", action=AuditAction.MODE, target="a",
                       detail="- -> enabled"),
        ]
        await store.sync_plugins([PluginRoute("a", Mode.ENABLED)])
        await store.set_mode("a", Mode.ENABLED, "bob")  # ids go on from the old ones
        [latest, *_] = await store.mode_changes()
        assert (latest.id, latest.from_mode, latest.actor) == (3, Mode.PAUSED, "bob")
    finally:
        await store.close()


def _store_before_the_audit_log(
    url: str, mode_changes: list[tuple[str, str | None, str, str, str]],
) -> None:
    """Make the store at ``url`` as the migrations before the audit log left it, with these
    rows of mode_changes (plugin, from, to, actor, at)."""
    path = file_of(url)
    if is_postgres_url(url):
        from arrears_router.store import postgres_schema

        with postgres_schema.connect(url, autocommit=True) as db:
            postgres_schema.migrate(db, migrations=_before_the_audit_log(
                postgres_schema.MIGRATIONS))
            db.execute("INSERT INTO plugins (name, mode, config_mode, configured)"
                       " VALUES ('a', 'paused', 'enabled', true)")
            with db.cursor() as cursor:
                cursor.executemany("INSERT INTO mode_changes (plugin, from_mode, to_mode, actor,"
                                   " at) VALUES (%s, %s, %s, %s, %s)", mode_changes)
        return
    assert path is not None
    from arrears_router.store import sqlite_schema

    db = sqlite_schema.connect(path)
    try:
        sqlite_schema.migrate(db, _before_the_audit_log(sqlite_schema.MIGRATIONS))
        db.execute("INSERT INTO plugins (name, mode, config_mode, configured)"
                   " VALUES ('a', 'paused', 'enabled', 1)")
        db.executemany("INSERT INTO mode_changes (plugin, from_mode, to_mode, actor, at)"
                       " VALUES (?, ?, ?, ?, ?)", mode_changes)
    finally:
        db.close()


def _before_the_audit_log(migrations: tuple[str, ...]) -> tuple[str, ...]:
    [audit_log] = [n for n, script in enumerate(migrations) if "CREATE TABLE audit" in script]
    return migrations[:audit_log]


async def test_a_done_delivery_replayed_by_id_is_audited_as_one(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [claimed] = await store.claim(want("a"))
    assert await store.finish([done(claimed)]) == [True]
    assert await store.replay(delivery_id=claimed.id, actor="ops") == 1
    [replayed] = await store.audit(action=AuditAction.REPLAY)
    assert (replayed.target, replayed.detail) == (f"delivery={claimed.id}", "1 replayed")
