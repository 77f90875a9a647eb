"""The ledger's books: its tables in the router's store and every statement it runs on them.

All of the ledger's SQL is in this module, so that a PostgreSQL variant can follow beside the
SQLite one; the plugin and its commands only call :class:`Books` (writes) and the read
functions. Tables are all named ``ledger_*``; the router's own tables are never touched.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from arrears_router.sqlite import SchemaError, connect, migrate, schema_version

__all__ = [
    "Balance",
    "Booked",
    "Books",
    "BooksError",
    "Entry",
    "ExportLine",
    "Line",
    "Overpayment",
    "balances",
    "export_lines",
    "journal_lines",
    "open_readonly",
    "overpayments",
    "split_fen",
    "yuan",
]

# Each entry upgrades the books by one version; never edit one that has shipped. The version
# is kept in ledger_schema (arrears_router.sqlite), not in PRAGMA user_version, the router's.
BOOKS = "ledger"
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

# ON CONFLICT DO NOTHING decides "new or already booked" in one statement; the unique
# constraint, not a prior SELECT, is what makes a payment's entry exactly-once.
_INSERT_ENTRY = """
    INSERT INTO ledger_entries
        (mch_id, transaction_id, repay_no, total_fee, time_end, day, booked_at, delivery_id)
    VALUES (:mch_id, :transaction_id, :repay_no, :total_fee, :time_end, :day, :booked_at,
            :delivery_id)
    ON CONFLICT (mch_id, transaction_id) DO NOTHING
    RETURNING id
"""
_FIND_ENTRY = "SELECT id FROM ledger_entries WHERE mch_id = ? AND transaction_id = ?"
_INSERT_LINE = """
    INSERT INTO ledger_lines (entry_id, line_no, account, debit_fen, credit_fen, order_no,
                              repay_no, transaction_id, time_end, day)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# Under BEGIN IMMEDIATE no other writer can book the same repay_no between this look and the
# insert. (A PostgreSQL variant needs a lock on (mch_id, repay_no) for the same guarantee.)
_EARLIER_PAYMENT = """
    SELECT id, transaction_id FROM ledger_entries
    WHERE mch_id = ? AND repay_no = ? AND id < ? ORDER BY id LIMIT 1
"""
_INSERT_OVERPAYMENT = (
    "INSERT INTO ledger_overpayments (entry_id, first_entry_id, detected_at) VALUES (?, ?, ?)"
)
_FIRST_OF_OVERPAYMENT = """
    SELECT f.transaction_id FROM ledger_overpayments o
    JOIN ledger_entries f ON f.id = o.first_entry_id
    WHERE o.entry_id = ?
"""
# An account filter names an account or a branch of them: `wechat_clearing` also matches
# `wechat_clearing:1900000109`. substr, not LIKE: account names contain `_`.
_BALANCES = """
    SELECT account, sum(debit_fen), sum(credit_fen) FROM ledger_lines
    WHERE (:day IS NULL OR day = :day)
      AND (:account IS NULL OR account = :account
           OR substr(account, 1, length(:account) + 1) = :account || ':')
    GROUP BY account ORDER BY account
"""
_EXPORT = """
    SELECT l.day, l.time_end, e.mch_id, l.transaction_id, l.repay_no, l.order_no, l.entry_id,
           l.line_no, l.account, l.debit_fen, l.credit_fen
    FROM ledger_lines l JOIN ledger_entries e ON e.id = l.entry_id
    WHERE l.day BETWEEN ? AND ?
    ORDER BY l.day, l.entry_id, l.line_no
"""
_OVERPAYMENTS = """
    SELECT o.entry_id, e.day, e.mch_id, e.repay_no, e.transaction_id, f.transaction_id,
           e.total_fee, o.detected_at
    FROM ledger_overpayments o
    JOIN ledger_entries e ON e.id = o.entry_id
    JOIN ledger_entries f ON f.id = o.first_entry_id
    ORDER BY o.entry_id
"""


class BooksError(Exception):
    """The books cannot be opened or written; the message says which store and why."""


# -- the journal, before any SQL


@dataclass(frozen=True, slots=True)
class Line:
    """One side of one order's share of a payment."""

    account: str
    order_no: str
    debit_fen: int
    credit_fen: int


@dataclass(frozen=True, slots=True)
class Entry:
    """A payment's journal entry, ready to book."""

    mch_id: str
    transaction_id: str
    repay_no: str
    total_fee: int
    time_end: str
    """As WeChat sent it."""
    day: str
    """The CST date the money was paid (``YYYY-MM-DD``): what "by day" means everywhere."""
    delivery_id: int
    lines: tuple[Line, ...]


@dataclass(frozen=True, slots=True)
class Booked:
    entry_id: int
    new: bool
    """False when the payment was booked before (a retry, a replay, a concurrent delivery)."""
    first_transaction_id: str | None
    """Set when an earlier transaction already paid this repay_no: an overpayment."""


def split_fen(total: int, parts: int) -> list[int]:
    """``total`` in ``parts`` shares as even as whole fen allow, the remainder on the first,
    so the shares always sum to ``total`` exactly (1000 over 3: 334, 333, 333).
    """
    share, remainder = divmod(total, parts)
    return [share + remainder] + [share] * (parts - 1)


def journal_lines(
    total_fee: int, order_nos: Sequence[str], debit_account: str, credit_account: str
) -> tuple[Line, ...]:
    """A debit and a credit line per order, the total split evenly (the payload carries no
    per-order amounts); without orders, one pair for the whole amount.
    """
    orders = list(order_nos) or [""]
    lines: list[Line] = []
    for order_no, fen in zip(orders, split_fen(total_fee, len(orders)), strict=True):
        lines.append(Line(debit_account, order_no, fen, 0))
        lines.append(Line(credit_account, order_no, 0, fen))
    return tuple(lines)


def yuan(fen: int) -> str:
    """Fen as exact yuan text: ``-1005`` is ``"-10.05"`` (no float ever touches money)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d}"


# -- connections


def _connect(path: str, *, busy_timeout: float, readonly: bool) -> sqlite3.Connection:
    try:
        return connect(path, busy_timeout=busy_timeout, readonly=readonly)
    except sqlite3.Error as exc:
        mode = "read-only " * readonly
        raise BooksError(f"cannot open the store {path} {mode}for the ledger: {exc}") from exc


def _too_new(path: str, version: int) -> BooksError:
    return BooksError(
        f"the ledger books in {path} are version {version}; this arrears-router knows"
        f" up to {len(MIGRATIONS)}: upgrade it"
    )


# -- writing


class Books:
    """The ledger's writing connection to the store, used by one thread at a time."""

    def __init__(self, db: sqlite3.Connection, *, lock_timeout: float) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._lock_timeout = lock_timeout

    @classmethod
    def open(cls, path: str, *, busy_timeout: float) -> Books:
        """Connect and bring the ledger's tables up to date (creating them the first time)."""
        db = _connect(path, busy_timeout=busy_timeout, readonly=False)
        try:
            _set_up(db, path)
        except BaseException:
            db.close()
            raise
        return cls(db, lock_timeout=busy_timeout)

    def close(self) -> None:
        # Under the lock: a booking abandoned by a timed-out delivery finishes first.
        with self._lock:
            self._db.close()

    def book(self, entry: Entry, booked_at: str) -> Booked:
        """Book ``entry`` unless its (mch_id, transaction_id) already is: the entry, its lines
        and an overpayment record commit together or not at all.
        """
        # Bounded, so a delivery waits no longer on this process's other bookings than on
        # another process's lock; the dispatcher retries it.
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise BooksError("the ledger's connection stayed busy; will retry")
        try:
            return self._book(entry, booked_at)
        except sqlite3.Error as exc:
            raise BooksError(f"cannot write the books: {exc}") from exc
        finally:
            self._lock.release()

    def _book(self, entry: Entry, booked_at: str) -> Booked:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            booked = _insert(db, entry, booked_at)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return booked


def _set_up(db: sqlite3.Connection, path: str) -> None:
    try:
        migrate(db, BOOKS, MIGRATIONS)
    except SchemaError as exc:
        raise _too_new(path, exc.version) from None
    except sqlite3.Error as exc:
        raise BooksError(f"cannot set up the ledger's tables in {path}: {exc}") from exc


def _insert(db: sqlite3.Connection, entry: Entry, booked_at: str) -> Booked:
    values = {
        "mch_id": entry.mch_id, "transaction_id": entry.transaction_id,
        "repay_no": entry.repay_no, "total_fee": entry.total_fee, "time_end": entry.time_end,
        "day": entry.day, "booked_at": booked_at, "delivery_id": entry.delivery_id,
    }
    inserted = db.execute(_INSERT_ENTRY, values).fetchall()  # fetched whole: ends the statement
    if not inserted:
        (entry_id,) = db.execute(_FIND_ENTRY, (entry.mch_id, entry.transaction_id)).fetchone()
        first = db.execute(_FIRST_OF_OVERPAYMENT, (entry_id,)).fetchone()
        return Booked(entry_id, new=False, first_transaction_id=first[0] if first else None)
    entry_id = int(inserted[0][0])
    db.executemany(_INSERT_LINE, [
        (entry_id, number, line.account, line.debit_fen, line.credit_fen, line.order_no,
         entry.repay_no, entry.transaction_id, entry.time_end, entry.day)
        for number, line in enumerate(entry.lines, start=1)
    ])
    earlier = None
    if entry.repay_no:  # an empty repay_no identifies nothing: never an overpayment
        earlier = db.execute(_EARLIER_PAYMENT, (entry.mch_id, entry.repay_no, entry_id)).fetchone()
    if earlier is not None:
        db.execute(_INSERT_OVERPAYMENT, (entry_id, earlier[0], booked_at))
    return Booked(entry_id, new=True, first_transaction_id=earlier[1] if earlier else None)


# -- reading (the commands): a read-only connection, never the write lock


class Balance(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    debit_fen: int
    credit_fen: int

    @property
    def balance_fen(self) -> int:
        """Debits less credits: the clearing account's is the money WeChat owes the operator."""
        return self.debit_fen - self.credit_fen


class ExportLine(msgspec.Struct, frozen=True, kw_only=True):
    day: str
    time_end: str
    mch_id: str
    transaction_id: str
    repay_no: str
    order_no: str
    entry_id: int
    line_no: int
    account: str
    debit_fen: int
    credit_fen: int


class Overpayment(msgspec.Struct, frozen=True, kw_only=True):
    entry_id: int
    day: str
    mch_id: str
    repay_no: str
    transaction_id: str
    first_transaction_id: str
    total_fee: int
    detected_at: str


def open_readonly(path: str) -> sqlite3.Connection:
    """The books, read-only (``mode=ro``): safe beside a running router, never locking it."""
    if not Path(path).is_file():
        raise BooksError(f"no store at {path}: the router creates it when it first starts")
    db = _connect(path, busy_timeout=5.0, readonly=True)
    try:
        _check_readable(db, path)
    except BaseException:
        db.close()
        raise
    return db


def _check_readable(db: sqlite3.Connection, path: str) -> None:
    try:
        version = schema_version(db, BOOKS)
    except sqlite3.Error as exc:
        raise BooksError(f"cannot read the store {path}: {exc}") from exc
    if version > len(MIGRATIONS):
        raise _too_new(path, version)
    if version == 0:
        raise BooksError(f"the store {path} has no ledger books: the router creates them when"
                         " it starts with [plugins.ledger]")
    if version < len(MIGRATIONS):
        raise BooksError(f"the ledger books in {path} are version {version}: start the router"
                         " once to migrate them")


def balances(
    db: sqlite3.Connection, *, day: str | None = None, account: str | None = None
) -> list[Balance]:
    """Debits and credits by account, of one CST day or of all time."""
    rows = db.execute(_BALANCES, {"day": day, "account": account}).fetchall()
    return [Balance(account=a, debit_fen=int(d), credit_fen=int(c)) for a, d, c in rows]


def export_lines(db: sqlite3.Connection, first_day: str, last_day: str) -> Iterator[ExportLine]:
    """Every line of the CST days from ``first_day`` to ``last_day``, both included."""
    for row in db.execute(_EXPORT, (first_day, last_day)):
        yield ExportLine(**dict(zip(ExportLine.__struct_fields__, row, strict=True)))


def overpayments(db: sqlite3.Connection) -> list[Overpayment]:
    """Each payment of a repay_no that an earlier transaction had paid, oldest first."""
    return [
        Overpayment(**dict(zip(Overpayment.__struct_fields__, row, strict=True)))
        for row in db.execute(_OVERPAYMENTS)
    ]
