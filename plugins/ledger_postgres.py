"""The ledger's books in a PostgreSQL store: its tables, its connections, and an advisory
lock per (mch_id, repay_no) that serialises the bookings of one repay_no across every
process (the statements are shared, in :mod:`.ledger_books`).

Imported only for a ``postgresql://`` store: the driver is the ``arrears-router[postgresql]``
extra. No message here names the store's URL, which may hold a password.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from arrears_router.plugins.ledger_books import (
    BOOKS,
    Books,
    BooksError,
    Entry,
    check_readable,
    too_new,
)
from arrears_router.postgres import (
    SchemaError,
    connect,
    describe_error,
    migrate,
    qmark,
    schema_version,
)

__all__ = ["MIGRATIONS", "open_books", "open_reader"]

WHERE = "the PostgreSQL store"

# Each entry upgrades the books by one version; never edit one that has shipped. The version
# is the row 'ledger' of schema_versions (arrears_router.postgres), beside the router's.
# The tables are SQLite's in PostgreSQL's types, the days and times kept as the same ISO
# text, so the shared statements read the same values from either store.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE ledger_entries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        mch_id text NOT NULL,
        transaction_id text NOT NULL,
        repay_no text NOT NULL,
        total_fee bigint NOT NULL CHECK (total_fee >= 0),
        time_end text NOT NULL,
        day text NOT NULL,
        booked_at text NOT NULL,
        delivery_id bigint NOT NULL,
        UNIQUE (mch_id, transaction_id)
    );
    CREATE INDEX ledger_entries_by_repay_no ON ledger_entries (mch_id, repay_no);
    CREATE TABLE ledger_lines (
        entry_id bigint NOT NULL REFERENCES ledger_entries (id),
        line_no integer NOT NULL,
        account text NOT NULL,
        debit_fen bigint NOT NULL CHECK (debit_fen >= 0),
        credit_fen bigint NOT NULL CHECK (credit_fen >= 0),
        order_no text NOT NULL,
        repay_no text NOT NULL,
        transaction_id text NOT NULL,
        time_end text NOT NULL,
        day text NOT NULL,
        PRIMARY KEY (entry_id, line_no),
        CHECK (debit_fen = 0 OR credit_fen = 0)
    );
    CREATE INDEX ledger_lines_by_day ON ledger_lines (day, account);
    CREATE INDEX ledger_lines_by_account ON ledger_lines (account);
    CREATE TABLE ledger_overpayments (
        entry_id bigint PRIMARY KEY REFERENCES ledger_entries (id),
        first_entry_id bigint NOT NULL REFERENCES ledger_entries (id),
        detected_at text NOT NULL
    )
    """,
)

# Held until the booking's transaction ends: a second payment of the repay_no, booked by
# any process, waits for the first to commit, then sees it and is flagged. The schema is in
# the key so that stores sharing a database never wait on each other; a hash collision
# only makes two repay_nos wait their turn, never a wrong booking.
_LOCK_REPAY_NO = """
    SELECT pg_advisory_xact_lock(hashtextextended(
        concat_ws(' ', 'arrears-router ledger', current_schema(), %s::text, %s::text), 0))
"""
READ_TIMEOUT = 60.0
"""Seconds a command's query may take: an export of months is long, and it locks nothing
the router needs."""


def _connect(url: str, **options: Any) -> psycopg.Connection[Any]:
    try:
        return connect(url, **options)
    except psycopg.Error as exc:
        mode = "read-only " * bool(options.get("readonly"))
        raise BooksError(f"cannot open {WHERE} {mode}for the ledger:"
                         f" {describe_error(exc)}") from exc


# -- writing


def open_books(url: str, *, busy_timeout: float) -> Books:
    """Connect and bring the ledger's tables up to date (creating them the first time).

    :param busy_timeout: seconds a booking waits for a lock (another booking of its
        repay_no or its payment) before it gives up and the delivery is retried.
    """
    writer = _Writer(url, busy_timeout)
    db = writer.connection()
    try:
        migrate(db, BOOKS, MIGRATIONS)
    except SchemaError as exc:
        writer.close()
        raise too_new(WHERE, exc.version, len(MIGRATIONS)) from None
    except psycopg.Error as exc:
        writer.close()
        raise BooksError(f"cannot set up the ledger's tables in {WHERE}:"
                         f" {describe_error(exc)}") from exc
    return Books(writer, lock_timeout=busy_timeout)


class _Writer:
    def __init__(self, url: str, busy_timeout: float) -> None:
        self._url = url
        self._busy_timeout = busy_timeout
        self._db: psycopg.Connection[Any] | None = None

    def connection(self) -> psycopg.Connection[Any]:
        """The open connection, made again after one was lost (a restart, a failover)."""
        db = self._db
        if db is None or db.closed or db.broken:
            if db is not None:
                db.close()
            # A statement may wait out its lock and still have time to run.
            db = self._db = _connect(self._url, lock_timeout=self._busy_timeout,
                                     statement_timeout=self._busy_timeout + 2.0)
        return db

    @contextmanager
    def transaction(self, entry: Entry) -> Iterator[_Transaction]:
        try:
            db = self.connection()
            with db.transaction():
                if entry.repay_no:  # an empty one is never an overpayment: nothing to order
                    db.execute(_LOCK_REPAY_NO, (entry.mch_id, entry.repay_no))
                yield _Transaction(db)
        except psycopg.Error as exc:
            raise BooksError(f"cannot write the books: {describe_error(exc)}") from exc

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


class _Transaction:
    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = self._db.execute(qmark(query), params)
        return cursor.fetchall() if cursor.description is not None else []

    def run_many(self, query: str, params: Sequence[Sequence[Any]]) -> None:
        with self._db.cursor() as cursor:
            cursor.executemany(qmark(query), params)  # pipelined: one round trip


# -- reading


def open_reader(url: str) -> _Reader:
    """The books, in read-only transactions (``default_transaction_read_only``): safe beside
    running routers, never taking a lock they wait for."""
    reader = _Reader(_connect(url, readonly=True, statement_timeout=READ_TIMEOUT))
    try:
        check_readable(reader, len(MIGRATIONS))
    except BaseException:
        reader.close()
        raise
    return reader


class _Reader:
    where = WHERE

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self._db = db

    def stream(self, query: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        # A server-side cursor: an export of many days comes in batches, not all at once.
        try:
            with self._db.transaction(), self._db.cursor(name="ledger_read") as cursor:
                cursor.execute(qmark(query), params)
                yield from cursor
        except psycopg.Error as exc:
            raise BooksError(f"cannot read {WHERE}: {describe_error(exc)}") from exc

    def version(self) -> int:
        try:
            return schema_version(self._db, BOOKS)
        except psycopg.Error as exc:
            raise BooksError(f"cannot read {WHERE}: {describe_error(exc)}") from exc

    def close(self) -> None:
        self._db.close()
