"""``arrears_router.postgres``: a plugin's own tables in the router's PostgreSQL store,
migrated as the router migrates its own, versioned apart from it, on connections made as
the router makes its own. Skipped where ``$ARREARS_ROUTER_TEST_POSTGRES`` is unset.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from arrears_router import ConfigError
from arrears_router.postgres import (
    SchemaError,
    connect,
    describe_error,
    is_postgres,
    migrate,
    qmark,
    schema_version,
)
from arrears_router.sqlite import SchemaError as SqliteSchemaError
from arrears_router.store.postgres_schema import MIGRATIONS as ROUTER_MIGRATIONS
from arrears_router.store.postgres_schema import ROUTER
from arrears_router.store.postgres_schema import migrate as migrate_router
from tests.harness import postgres_schema

FIRST = "CREATE TABLE receipts_sent (transaction_id text PRIMARY KEY)"
SECOND = """
    ALTER TABLE receipts_sent ADD COLUMN sent_at timestamptz;
    CREATE INDEX receipts_by_time ON receipts_sent (sent_at)
"""
Connection = psycopg.Connection[Any]


@pytest.fixture
def url() -> Iterator[str]:
    with postgres_schema() as found:
        yield found


@pytest.fixture
def store(url: str) -> Iterator[Connection]:
    """A router's store, as the router leaves it, and a plugin's connection to it."""
    with connect(url) as db:
        migrate_router(db)
        yield db


def tables(db: Connection) -> set[str]:
    rows = db.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    return {name for (name,) in rows.fetchall()}


def test_which_store_a_url_names() -> None:
    assert is_postgres("postgresql://router@db.example/arrears")
    assert is_postgres("postgres://router@db.example/arrears")
    assert not is_postgres("sqlite:///router.db")


def test_a_plugins_tables_are_made_and_versioned_apart_from_the_routers(
    store: Connection,
) -> None:
    assert schema_version(store, "receipts") == 0
    migrate(store, "receipts", (FIRST,))
    assert "receipts_sent" in tables(store)
    assert schema_version(store, "receipts") == 1
    assert schema_version(store, ROUTER) == len(ROUTER_MIGRATIONS)

    migrate(store, "receipts", (FIRST,))  # again: nothing to do (FIRST again would fail)
    migrate(store, "receipts", (FIRST, SECOND))  # only the new one runs
    assert schema_version(store, "receipts") == 2
    store.execute("INSERT INTO receipts_sent VALUES ('T1', now())")


def test_a_failing_migration_leaves_nothing_behind(store: Connection) -> None:
    with pytest.raises(psycopg.errors.SyntaxError):
        migrate(store, "receipts", (FIRST, "CREATE TABLE receipts_broken ("))
    assert schema_version(store, "receipts") == 0
    assert "receipts_sent" not in tables(store)


def test_tables_newer_than_the_code_stop_it_with_the_sqlite_kits_error(
    store: Connection,
) -> None:
    migrate(store, "receipts", (FIRST, SECOND))
    with pytest.raises(SchemaError, match="the receipts tables are version 2; this code knows"
                       " up to 1: upgrade it") as caught:
        migrate(store, "receipts", (FIRST,))
    assert (caught.value.version, caught.value.known) == (2, 1)
    assert SchemaError is SqliteSchemaError  # one class to catch, whichever the store


def test_processes_starting_at_once_migrate_once(url: str) -> None:
    errors: list[BaseException] = []
    gate = threading.Barrier(6)

    def start() -> None:
        try:
            with connect(url) as db:
                gate.wait()
                migrate(db, "receipts", (FIRST, SECOND))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with connect(url) as db:
        assert schema_version(db, "receipts") == 2


def test_a_readonly_connection_reads_and_writes_nothing(store: Connection, url: str) -> None:
    migrate(store, "receipts", (FIRST,))
    with connect(url, readonly=True) as reader:
        assert schema_version(reader, "receipts") == 1
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.execute("INSERT INTO receipts_sent VALUES ('T1')")


def test_waits_are_bounded_as_asked(store: Connection, url: str) -> None:
    migrate(store, "receipts", (FIRST,))
    with connect(url, lock_timeout=0.2, statement_timeout=1.5) as db:
        settings = db.execute("SELECT current_setting('lock_timeout'),"
                              " current_setting('statement_timeout')").fetchone()
        assert settings == ("200ms", "1500ms")
        assert db.autocommit
        with store.transaction():
            store.execute("LOCK TABLE receipts_sent")
            with pytest.raises(psycopg.errors.LockNotAvailable) as caught:
                db.execute("SELECT * FROM receipts_sent")
    assert describe_error(caught.value) == "canceling statement due to lock timeout"


def test_another_store_is_refused_without_repeating_its_url() -> None:
    with pytest.raises(ConfigError,
                       match=r"^store\.url: not a PostgreSQL store \(scheme 'mysql'\)$") as caught:
        connect("mysql://books:s3cret@db.example/arrears")
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_database_is_told_without_its_password() -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        connect("postgresql://books:s3cret@127.0.0.1:1/arrears")
    assert "s3cret" not in describe_error(caught.value)


def test_one_statement_with_qmarks_runs_on_postgresql() -> None:
    with postgres_schema() as url, connect(url) as db:
        db.execute("CREATE TABLE receipts (id integer, note text)")
        db.execute(qmark("INSERT INTO receipts VALUES (?, ?)"), (1, "a"))
        assert db.execute(qmark("SELECT note FROM receipts WHERE id = ?"), (1,)).fetchall() == [
            ("a",)]
