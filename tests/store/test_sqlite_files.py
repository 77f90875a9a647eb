"""The SQLite store's files: a write is reported kept only if it went to the file a restart
opens, and the readiness check writes as a payment does."""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from arrears_router.store import Accepted, StoreError
from arrears_router.store.sqlite import SqliteStore
from tests.full_disk import fill, small_tmpfs
from tests.store.records import event, payment

pytestmark = pytest.mark.anyio


def transaction_ids(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {tx for (tx,) in db.execute("SELECT transaction_id FROM events")}


# -- the file at the path


@pytest.mark.parametrize("removed", ["", "-wal", "-shm"], ids=["database", "wal", "shm"])
async def test_a_store_file_deleted_while_open_refuses_every_write_until_reopened(
    tmp_path: Path, removed: str
) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.open()
    assert await store.accept(event(payment("T1"))) is Accepted.STORED
    os.remove(f"{path}{removed}")

    # Written to a file gone at the next start: reported failed, so WeChat sends it again.
    with pytest.raises(StoreError, match="deleted or replaced"):
        await store.accept(event(payment("T2")))
    with pytest.raises(StoreError, match="deleted or replaced"):
        await store.ping()
    with pytest.raises(StoreError, match="restart the router"):
        await store.accept(event(payment("T3")))
    await store.close()

    restarted = SqliteStore(str(path))  # opens what is at the path now
    await restarted.open()
    await restarted.ping()
    # WeChat's retry: stored now (or kept already, if the lost WAL was saved at the close).
    assert await restarted.accept(event(payment("T2"))) in {Accepted.STORED, Accepted.DUPLICATE}
    assert len(await restarted.events_by_transaction("T2")) == 1
    await restarted.close()


async def test_a_store_file_replaced_while_open_is_refused_and_the_new_one_used_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.accept(event(payment("T1")))
    await store.close()
    backup = tmp_path / "backup.db"
    shutil.copy(path, backup)

    store = SqliteStore(str(path))
    await store.open()
    await store.accept(event(payment("T2")))
    os.replace(backup, path)  # a restore over the live file
    with pytest.raises(StoreError, match="deleted or replaced"):
        await store.accept(event(payment("T3")))
    await store.close()
    assert transaction_ids(path) == {"T1"}  # the restored file, untouched by the old writer


async def test_ping_fails_while_the_disk_is_full_and_passes_once_space_is_freed(
    tmp_path: Path,
) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        store = SqliteStore(str(disk / "s.db"))
        await store.open()
        try:
            assert await store.accept(event(payment("T1"))) is Accepted.STORED
            filler = fill(disk)
            # An empty transaction writes no page: ping must write, as a payment does.
            with pytest.raises(StoreError, match="full"):
                await store.ping()
            with pytest.raises(StoreError, match="full"):
                await store.accept(event(payment("T2")))
            filler.unlink()
            await store.ping()
            assert await store.accept(event(payment("T2"))) is Accepted.STORED
        finally:
            await store.close()
        assert transaction_ids(disk / "s.db") == {"T1", "T2"}
