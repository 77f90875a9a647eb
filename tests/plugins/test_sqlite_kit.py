"""``arrears_router.sqlite``: a plugin's own tables in the router's store, migrated by the
code that migrates the router's schema, versioned apart from it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from arrears_router import ConfigError
from arrears_router.sqlite import SchemaError, connect, migrate, schema_version, store_path
from arrears_router.store.sqlite_schema import MIGRATIONS as ROUTER_MIGRATIONS
from arrears_router.store.sqlite_schema import migrate as migrate_router

FIRST = "CREATE TABLE receipts_sent (transaction_id TEXT PRIMARY KEY)"
SECOND = """
    ALTER TABLE receipts_sent ADD COLUMN sent_at TEXT;
    CREATE INDEX receipts_by_time ON receipts_sent (sent_at)
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A router's store, as the router leaves it."""
    with closing(connect(str(tmp_path / "router.db"))) as db:
        migrate_router(db)
        yield db


def tables(db: sqlite3.Connection) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_a_plugins_tables_are_made_and_versioned_apart_from_the_routers(
    store: sqlite3.Connection,
) -> None:
    assert schema_version(store, "receipts") == 0
    migrate(store, "receipts", (FIRST,))
    assert {"receipts_sent", "receipts_schema"} <= tables(store)
    assert schema_version(store, "receipts") == 1
    assert store.execute("PRAGMA user_version").fetchone() == (len(ROUTER_MIGRATIONS),)

    migrate(store, "receipts", (FIRST,))  # again: nothing to do (FIRST again would fail)
    migrate(store, "receipts", (FIRST, SECOND))  # only the new one runs
    assert schema_version(store, "receipts") == 2
    store.execute("INSERT INTO receipts_sent VALUES ('T1', '2026-11-25')")


def test_a_failing_migration_leaves_nothing_behind(store: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError):
        migrate(store, "receipts", (FIRST, "CREATE TABLE receipts_broken ("))
    assert schema_version(store, "receipts") == 0
    assert not {"receipts_sent", "receipts_schema"} & tables(store)
    assert not store.in_transaction


def test_tables_newer_than_the_code_stop_it(store: sqlite3.Connection) -> None:
    migrate(store, "receipts", (FIRST, SECOND))
    with pytest.raises(SchemaError, match="the receipts tables are version 2; this code knows"
                       " up to 1: upgrade it") as caught:
        migrate(store, "receipts", (FIRST,))
    assert (caught.value.version, caught.value.known) == (2, 1)


@pytest.mark.parametrize("name", ["Receipts", "receipts; DROP TABLE events", "", "1st"])
def test_a_name_that_is_no_table_prefix_is_refused(store: sqlite3.Connection, name: str) -> None:
    with pytest.raises(ValueError, match="is not a table prefix"):
        migrate(store, name, (FIRST,))


def test_a_readonly_connection_reads_the_version_and_writes_nothing(
    store: sqlite3.Connection, tmp_path: Path
) -> None:
    migrate(store, "receipts", (FIRST,))
    with closing(connect(str(tmp_path / "router.db"), readonly=True)) as reader:
        assert schema_version(reader, "receipts") == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO receipts_sent VALUES ('T1')")


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:////var/lib/arrears/router.db", "/var/lib/arrears/router.db"),
    ("sqlite:///router.db", "./router.db"),
])
def test_the_store_path_of_a_sqlite_url(url: str, path: str) -> None:
    assert store_path(url, "receipts") == path


def test_another_store_is_refused_without_repeating_its_url() -> None:
    with pytest.raises(ConfigError, match=r"^store\.url: plugin receipts keeps its tables in"
                       r" the router's store .* sqlite:///PATH .*'postgresql'$") as caught:
        store_path("postgresql://books:s3cret@db.example/arrears", "receipts")
    assert "s3cret" not in str(caught.value)
