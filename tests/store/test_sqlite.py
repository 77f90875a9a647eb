"""What is particular to the SQLite backend: durability settings, migrations, group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from arrears_router.store import Accepted, Mode, PluginRoute, StoreError, open_store
from arrears_router.store.sqlite import SqliteStore
from arrears_router.store.sqlite_schema import MIGRATIONS
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
