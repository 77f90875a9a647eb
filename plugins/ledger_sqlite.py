"""The ledger's books in a SQLite store: its tables, its connections, and BEGIN IMMEDIATE as
the lock that serialises bookings (the statements are shared, in :mod:`.ledger_books`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from arrears_router.plugins.ledger_books import (
    BOOKS,
    Books,
    BooksError,
    Entry,
    check_readable,
    too_new,
)
from arrears_router.sqlite import SchemaError, connect, migrate, schema_version

__all__ = ["MIGRATIONS", "open_books", "open_reader"]

# Each entry upgrades the books by one version; never edit one that has shipped. The version
# is kept in ledger_schema (arrears_router.sqlite), not in PRAGMA user_version, the router's.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE ledger_entries (
        id INTEGER PRIMARY KEY,
        mch_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        repay_no TEXT NOT NULL,
        total_fee INTEGER NOT NULL CHECK (total_fee >= 0),
        time_end TEXT NOT NULL,
        day TEXT NOT NULL,
        booked_at TEXT NOT NULL,
        delivery_id INTEGER NOT NULL,
        UNIQUE (mch_id, transaction_id)
    );
    CREATE INDEX ledger_entries_by_repay_no ON ledger_entries (mch_id, repay_no);
    CREATE TABLE ledger_lines (
        entry_id INTEGER NOT NULL REFERENCES ledger_entries (id),
        line_no INTEGER NOT NULL,
        account TEXT NOT NULL,
        debit_fen INTEGER NOT NULL CHECK (debit_fen >= 0),
        credit_fen INTEGER NOT NULL CHECK (credit_fen >= 0),
        order_no TEXT NOT NULL,
        repay_no TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        time_end TEXT NOT NULL,
        day TEXT NOT NULL,
        PRIMARY KEY (entry_id, line_no),
        CHECK (debit_fen = 0 OR credit_fen = 0)
    );
    CREATE INDEX ledger_lines_by_day ON ledger_lines (day, account);
    CREATE INDEX ledger_lines_by_account ON ledger_lines (account);
    CREATE TABLE ledger_overpayments (
        entry_id INTEGER PRIMARY KEY REFERENCES ledger_entries (id),
        first_entry_id INTEGER NOT NULL REFERENCES ledger_entries (id),
        detected_at TEXT NOT NULL
    )
    """,
)


def _connect(path: str, *, busy_timeout: float, readonly: bool) -> sqlite3.Connection:
    try:
        return connect(path, busy_timeout=busy_timeout, readonly=readonly)
    except sqlite3.Error as exc:
        mode = "read-only " * readonly
        raise BooksError(f"cannot open the store {path} {mode}for the ledger: {exc}") from exc


# -- writing


def open_books(path: str, *, busy_timeout: float) -> Books:
    """Connect and bring the ledger's tables up to date (creating them the first time)."""
    db = _connect(path, busy_timeout=busy_timeout, readonly=False)
    try:
        _set_up(db, path)
    except BaseException:
        db.close()
        raise
    return Books(_Writer(db), lock_timeout=busy_timeout)


def _set_up(db: sqlite3.Connection, path: str) -> None:
    try:
        migrate(db, BOOKS, MIGRATIONS)
    except SchemaError as exc:
        raise too_new(f"the store {path}", exc.version, len(MIGRATIONS)) from None
    except sqlite3.Error as exc:
        raise BooksError(f"cannot set up the ledger's tables in {path}: {exc}") from exc


class _Writer:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @contextmanager
    def transaction(self, entry: Entry) -> Iterator[_Transaction]:
        # BEGIN IMMEDIATE takes the store's one write lock (waiting busy_timeout at most):
        # every booking, of any repay_no, is serialised by it.
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield _Transaction(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise BooksError(f"cannot write the books: {exc}") from exc

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(query, params).fetchall()  # fetched whole: ends the statement

    def run_many(self, query: str, params: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(query, params)


# -- reading


def open_reader(path: str) -> _Reader:
    """The books, read-only (``mode=ro``): safe beside a running router, never locking it."""
    if not Path(path).is_file():
        raise BooksError(f"no store at {path}: the router creates it when it first starts")
    reader = _Reader(_connect(path, busy_timeout=5.0, readonly=True), path)
    try:
        check_readable(reader, len(MIGRATIONS))
    except BaseException:
        reader.close()
        raise
    return reader


class _Reader:
    def __init__(self, db: sqlite3.Connection, path: str) -> None:
        self._db = db
        self._path = path
        self.where = f"the store {path}"

    def stream(self, query: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        try:
            yield from self._db.execute(query, params)
        except sqlite3.Error as exc:
            raise BooksError(f"cannot read the store {self._path}: {exc}") from exc

    def version(self) -> int:
        try:
            return schema_version(self._db, BOOKS)
        except sqlite3.Error as exc:
            raise BooksError(f"cannot read the store {self._path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()
