"""What is particular to the SQLite backend: durability settings, migrations, group commit."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from arrears_router.store import (
    Accepted,
    ClaimLimit,
    DeliveryResult,
    DeliveryStatus,
    Mode,
    PluginRoute,
    Pruned,
    StoreError,
    open_store,
)
from arrears_router.store import sqlite as sqlite_store
from arrears_router.store.sqlite import SqliteStore
from arrears_router.store.sqlite_schema import MIGRATIONS, connect, migrate
from tests.harness import arrive
from tests.store.records import event, payment

pytestmark = pytest.mark.anyio


async def test_wal_and_full_sync_and_the_latest_schema(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)


async def test_reopening_keeps_data_and_does_not_migrate_twice(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SqliteStore(path)
    await store.open()
    await store.accept(event(payment("T1")))
    await store.close()
    again = SqliteStore(path)
    await again.open()
    assert [r.payment.transaction_id for r in await again.events()] == ["T1"]
    await again.close()


async def test_concurrent_writes_share_transactions(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "s.db"))
    await store.open()
    outcomes = await asyncio.gather(*(store.accept(event(payment(f"T{n}"))) for n in range(500)))
    assert set(outcomes) == {Accepted.STORED}
    assert store._committer.batches < 500  # group commit: fewer transactions than writes
    await store.close()


async def test_a_locked_database_fails_the_write_with_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.open()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked"):
        await store.accept(event(payment("T1")))
    holder.execute("ROLLBACK")
    assert await store.accept(event(payment("T1"))) is Accepted.STORED
    await store.close()


async def test_a_write_waits_for_another_process_write_lock_and_then_goes_through(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.open()
    holder = sqlite3.connect(path, isolation_level=None)  # as a worker beside serve would
    holder.execute("BEGIN IMMEDIATE")
    batches = store._committer.batches
    accepting = asyncio.create_task(store.accept(event(payment("T1"))))

    async def at_its_begin() -> bool:
        return store._committer.batches > batches

    await arrive(at_its_begin, "the writer taking the write to its BEGIN")
    assert not accepting.done()
    holder.execute("ROLLBACK")
    assert await accepting is Accepted.STORED
    assert [r.payment.transaction_id for r in await store.events()] == ["T1"]
    await store.close()


class _FailingDisk(sqlite3.Connection):
    """A connection whose every statement fails as a broken disk's would, counting them."""

    executed = 0

    def execute(self, *args: Any, **kwargs: Any) -> sqlite3.Cursor:
        self.executed += 1
        raise sqlite3.OperationalError("disk I/O error")


def test_an_error_other_than_a_held_lock_is_raised_at_the_first_try(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db", isolation_level=None, factory=_FailingDisk)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        sqlite_store._begin_immediate(db)
    assert db.executed == 1  # never tried again: waiting would not mend a disk
    db.close()


async def test_an_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    store = SqliteStore(str(tmp_path / "a-file" / "s.db"))
    with pytest.raises(StoreError, match="cannot open SQLite store"):
        await store.open()


def test_store_urls() -> None:
    assert isinstance(open_store("sqlite:////tmp/x.db"), SqliteStore)
    with pytest.raises(StoreError, match="unsupported store url"):
        open_store("mysql://x")


async def test_ping_fails_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.ping()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked"):
        await store.ping()
    holder.execute("ROLLBACK")
    await store.ping()
    await store.close()


async def test_a_read_only_store_reads_under_a_write_lock_and_refuses_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.accept(event(payment("T1")))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    reader = SqliteStore(str(path), readonly=True)
    await reader.open()
    assert [r.payment.transaction_id for r in await reader.events()] == ["T1"]
    with pytest.raises(StoreError, match="read-only"):
        await reader.accept(event(payment("T2")))
    await reader.close()
    holder.execute("ROLLBACK")
    await store.close()


async def test_a_payments_deliveries_are_found_without_reading_the_others(
    tmp_path: Path,
) -> None:
    """The work (SQLite virtual-machine steps) of finding one payment's deliveries is the
    same among 3 payments as among 300: it reads that payment's rows through indexes."""

    async def steps_among(payments: int) -> int:
        store = SqliteStore(str(tmp_path / f"{payments}.db"))
        await store.open()
        await store.sync_plugins([PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED)])
        ids = [f"T{n:04d}" for n in range(payments)]  # the one looked for is never the last
        await asyncio.gather(*(store.accept(event(payment(i))) for i in ids))
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0  # go on

        assert store._reader is not None
        store._reader.set_progress_handler(step, 1)
        found = await store.deliveries_by_transaction("T0001")
        store._reader.set_progress_handler(None, 1)
        await store.close()
        assert [(d.transaction_id, d.plugin) for d in found] == [("T0001", "a"), ("T0001", "b")]
        return steps

    assert await steps_among(3) == await steps_among(300)


async def done_deliveries(store: SqliteStore, payments: int, first: int = 0) -> None:
    """``payments`` new payments, each with a done delivery to plugin ``a``."""
    await store.sync_plugins([PluginRoute("a", Mode.ENABLED)])
    await asyncio.gather(*(store.accept(event(payment(f"T{n:05d}")))
                           for n in range(first, first + payments)))
    claimed = await store.claim({"a": ClaimLimit(payments, 60.0)})
    await store.finish([DeliveryResult(id=d.id, token=d.token, status=DeliveryStatus.DONE)
                        for d in claimed])


def steps_of(db: sqlite3.Connection) -> list[int]:
    """A counter of the SQLite virtual-machine steps run on ``db`` from now on."""
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0  # go on

    db.set_progress_handler(step, 1)
    return steps


PLUGIN_DONE_MIGRATION = 7
"""The migration that began counting done deliveries (1-based, as ``user_version``)."""


async def test_the_migration_counts_the_deliveries_done_before_it(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with contextlib.closing(connect(path)) as older:  # the schema before the counts
        migrate(older, MIGRATIONS[:PLUGIN_DONE_MIGRATION - 1])
        assert "plugin_done" not in MIGRATIONS[PLUGIN_DONE_MIGRATION - 2]
        older.execute("INSERT INTO plugins VALUES ('a', 'enabled', NULL, 1)")
        for n, status in enumerate(["done", "done", "done", "pending"]):
            older.execute(
                "INSERT INTO events (appid, mch_id, transaction_id, digest, received_at,"
                " payment, envelope) VALUES ('wx', 'm', ?, x'00', '2026-01-01', ?, x'00')",
                (f"T{n}", msgspec.json.encode(payment(f"T{n}"))))
            older.execute("INSERT INTO deliveries (event_id, plugin, status, next_at, created_at,"
                          " updated_at) VALUES (?, 'a', ?, 0, 0, 0)", (n + 1, status))
        older.commit()
    again = SqliteStore(str(path))
    await again.open()
    [a] = await again.plugin_states()
    assert (a.pending, a.done, a.dead) == (1, 3, 0)
    await again.close()


async def test_plugins_list_costs_the_same_however_many_deliveries_are_done(
    tmp_path: Path,
) -> None:
    async def steps_among(done: int) -> int:
        store = SqliteStore(str(tmp_path / f"{done}.db"))
        await store.open()
        await done_deliveries(store, done)
        assert store._reader is not None
        steps = steps_of(store._reader)
        [a] = await store.plugin_states()
        store._reader.set_progress_handler(None, 1)
        await store.close()
        assert a.done == done
        return steps[0]

    assert await steps_among(3) == await steps_among(300)


async def test_a_prune_with_nothing_old_does_not_walk_the_recent_deliveries(
    tmp_path: Path,
) -> None:
    """Retention finds where the old deliveries end by bisecting ids: its work grows with
    the log of the deliveries kept, not with their number."""

    async def steps_among(young: int) -> int:
        store = SqliteStore(str(tmp_path / f"{young}.db"))
        await store.open()
        await done_deliveries(store, 10)
        cutoff = datetime.now(UTC)
        await asyncio.sleep(0.01)
        await done_deliveries(store, young, first=10)
        assert store._writer is not None
        steps = steps_of(store._writer)
        pruned = await store.prune(done_before=cutoff, quarantine_before=cutoff, limit=500)
        store._writer.set_progress_handler(None, 1)
        assert pruned == Pruned(deliveries=10, quarantine=0)
        assert len(await store.deliveries(limit=10_000)) == young
        await store.close()
        return steps[0]

    few, many = await steps_among(10), await steps_among(2000)
    assert many < 2 * few, (few, many)
