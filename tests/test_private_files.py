"""Riders' payments on disk are their owner's alone (0600), under a login's usual umask: the
store (with its -wal and -shm) from its first byte, one an older version left readable once
opened, and the ledger's CSV export."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from arrears_router.config import MerchantConfig
from arrears_router.plugins.ledger import Ledger
from arrears_router.store.sqlite import SqliteStore
from arrears_router.testkit import RouterFactory
from tests.harness import cli, write_config
from tests.store.records import event, payment

pytestmark = pytest.mark.usefixtures("usual_umask")


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """022: what is not made private is readable by every user of the machine."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def store_files(path: Path) -> list[Path]:
    return [path, path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")]


@pytest.mark.anyio
async def test_a_new_store_and_its_wal_and_shm_are_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "data" / "router.db"
    store = SqliteStore(str(path))
    await store.open()
    await store.accept(event(payment("T1")))
    assert [mode(f) for f in store_files(path)] == [0o600] * 3
    assert mode(path.parent) == 0o700  # the folder the store made
    await store.close()


@pytest.mark.anyio
async def test_a_store_left_readable_by_an_older_version_is_made_private_at_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "router.db"
    older = sqlite3.connect(path, isolation_level=None)  # as versions before this one did
    older.execute("PRAGMA journal_mode=WAL")
    older.execute("CREATE TABLE t (x)")
    assert [mode(f) for f in store_files(path)] == [0o644] * 3
    store = SqliteStore(str(path))
    await store.open()
    assert [mode(f) for f in store_files(path)] == [0o600] * 3
    await store.close()
    older.close()


def test_the_store_and_a_ledger_export_are_the_owners_alone(
    arrears_router: RouterFactory, arrears_merchant: MerchantConfig, tmp_path: Path
) -> None:
    router = arrears_router({"ledger": {}}, classes={"ledger": Ledger})
    router.pay(transaction_id="T1", time_end="20261125093015").assert_done()
    assert [mode(f) for f in store_files(tmp_path / "router.db")] == [0o600] * 3

    config = write_config(tmp_path / "commands.toml", merchants=[{
        key: getattr(arrears_merchant, key) for key in ("appid", "mch_id", "sign_key", "aes_key")
    }])
    fresh, older = tmp_path / "fresh.csv", tmp_path / "older.csv"
    older.write_text("an export of last month\n")  # made readable by all, as before
    for output in (fresh, older):
        result = cli("ledger", "export", "--from", "2026-11-25", "--to", "2026-11-25",
                     "--output", str(output), config=config)
        assert result.returncode == 0, result.stderr
        assert mode(output) == 0o600
        assert "T1" in output.read_text()
    assert "last month" not in older.read_text()
