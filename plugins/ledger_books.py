"""The ledger's books: the journal, the statements booking and reading it, and what each
store must provide them.

The statements are written once, in SQL that SQLite and PostgreSQL both run (``?`` marks
a parameter); :mod:`.ledger_sqlite` and :mod:`.ledger_postgres` hold each store's tables,
connections and write lock. The plugin and its commands only call :class:`Books` (writes)
and the read functions. Tables are all named ``ledger_*``; the router's own are never touched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

__all__ = [
    "BOOKS",
    "Backend",
    "Balance",
    "Booked",
    "Books",
    "BooksError",
    "Entry",
    "ExportLine",
    "Line",
    "Overpayment",
    "Reader",
    "Transaction",
    "balances",
    "check_readable",
    "export_lines",
    "journal_lines",
    "overpayments",
    "split_fen",
    "too_new",
    "yuan",
]

BOOKS = "ledger"
"""The books' name: their tables' prefix, and whose version the store's kit keeps."""

# ON CONFLICT DO NOTHING decides "new or already booked" in one statement; the unique
# constraint, not a prior SELECT, is what makes a payment's entry exactly-once.
_INSERT_ENTRY = """
    INSERT INTO ledger_entries
        (mch_id, transaction_id, repay_no, total_fee, time_end, day, booked_at, delivery_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (mch_id, transaction_id) DO NOTHING
    RETURNING id
"""
_FIND_ENTRY = "SELECT id FROM ledger_entries WHERE mch_id = ? AND transaction_id = ?"
_INSERT_LINE = """
    INSERT INTO ledger_lines (entry_id, line_no, account, debit_fen, credit_fen, order_no,
                              repay_no, transaction_id, time_end, day)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# Under the store's lock on the repay_no (Backend.transaction) no other writer can book the
# same repay_no between this look and the insert.
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
_BALANCES = "SELECT account, sum(debit_fen), sum(credit_fen) FROM ledger_lines"
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
    """The books cannot be opened, read or written; the message says which store and why
    (a PostgreSQL store by its scheme alone: its URL may hold a password)."""


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


# -- what a store provides


class Transaction(Protocol):
    """Statements in one of the store's transactions; its errors are the store's driver's."""

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``query`` (``?`` parameters); its rows, none for a statement that returns
        none."""
        ...

    def run_many(self, query: str, params: Sequence[Sequence[Any]]) -> None: ...


class Backend(Protocol):
    """A store's writing connection."""

    def transaction(self, entry: Entry) -> AbstractContextManager[Transaction]:
        """A write transaction holding the lock that serialises every booking of
        ``entry``'s (mch_id, repay_no); committed when the block ends, rolled back if it
        raises. The store's errors come out as :class:`BooksError`."""
        ...

    def close(self) -> None: ...


class Reader(Protocol):
    """A store's read-only connection, for the commands: never the write lock."""

    where: str
    """The store, for messages: ``the store PATH`` (SQLite), or ``the PostgreSQL store``."""

    def stream(self, query: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """``query``'s rows as they come; the store's errors as :class:`BooksError`."""
        ...

    def version(self) -> int:
        """The books' schema version: 0 before they are created."""
        ...

    def close(self) -> None: ...


# -- writing


class Books:
    """The ledger's writing connection to the store, used by one thread at a time."""

    def __init__(self, backend: Backend, *, lock_timeout: float) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._lock_timeout = lock_timeout

    def close(self) -> None:
        # Under the lock: a booking abandoned by a timed-out delivery finishes first.
        with self._lock:
            self._backend.close()

    def book(self, entry: Entry, booked_at: str) -> Booked:
        """Book ``entry`` unless its (mch_id, transaction_id) already is: the entry, its lines
        and an overpayment record commit together or not at all.

        :raises BooksError: the store failed or stayed locked; the delivery is retried.
        """
        # Bounded, so a delivery waits no longer on this process's other bookings than on
        # another process's lock; the dispatcher retries it.
        if not self._lock.acquire(timeout=self._lock_timeout):
            raise BooksError("the ledger's connection stayed busy; will retry")
        try:
            with self._backend.transaction(entry) as tx:
                return _insert(tx, entry, booked_at)
        finally:
            self._lock.release()


def _insert(tx: Transaction, entry: Entry, booked_at: str) -> Booked:
    inserted = tx.rows(_INSERT_ENTRY, (
        entry.mch_id, entry.transaction_id, entry.repay_no, entry.total_fee, entry.time_end,
        entry.day, booked_at, entry.delivery_id))
    if not inserted:
        [(entry_id,)] = tx.rows(_FIND_ENTRY, (entry.mch_id, entry.transaction_id))
        first = tx.rows(_FIRST_OF_OVERPAYMENT, (entry_id,))
        return Booked(int(entry_id), new=False,
                      first_transaction_id=first[0][0] if first else None)
    entry_id = int(inserted[0][0])
    tx.run_many(_INSERT_LINE, [
        (entry_id, number, line.account, line.debit_fen, line.credit_fen, line.order_no,
         entry.repay_no, entry.transaction_id, entry.time_end, entry.day)
        for number, line in enumerate(entry.lines, start=1)
    ])
    earlier = None
    if entry.repay_no:  # an empty repay_no identifies nothing: never an overpayment
        found = tx.rows(_EARLIER_PAYMENT, (entry.mch_id, entry.repay_no, entry_id))
        earlier = found[0] if found else None
    if earlier is not None:
        tx.rows(_INSERT_OVERPAYMENT, (entry_id, earlier[0], booked_at))
    return Booked(entry_id, new=True, first_transaction_id=earlier[1] if earlier else None)


def too_new(where: str, version: int, known: int) -> BooksError:
    return BooksError(f"the ledger books in {where} are version {version}; this"
                      f" arrears-router knows up to {known}: upgrade it")


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


def check_readable(reader: Reader, known: int) -> None:
    """Raise :class:`BooksError` unless ``reader``'s books are there, at version ``known``."""
    version = reader.version()
    where = reader.where
    if version > known:
        raise too_new(where, version, known)
    if version == 0:
        raise BooksError(f"{where} has no ledger books: the router creates them when it starts"
                         " with [plugins.ledger]")
    if version < known:
        raise BooksError(f"the ledger books in {where} are version {version}: start the router"
                         " once to migrate them")


def balances(reader: Reader, *, day: str | None = None, account: str | None = None
             ) -> list[Balance]:
    """Debits and credits by account, of one CST day or of all time. An account names an
    account or a branch of them: ``wechat_clearing`` also matches ``wechat_clearing:1900``."""
    where: list[str] = []
    params: list[Any] = []
    if day is not None:
        where.append("day = ?")
        params.append(day)
    if account is not None:
        # substr, not LIKE: account names contain `_`.
        where.append("(account = ? OR substr(account, 1, ?) = ?)")
        params += [account, len(account) + 1, f"{account}:"]
    query = " ".join([_BALANCES, *(["WHERE", " AND ".join(where)] if where else []),
                      "GROUP BY account ORDER BY account"])
    return [Balance(account=a, debit_fen=int(d), credit_fen=int(c))
            for a, d, c in reader.stream(query, params)]


def export_lines(reader: Reader, first_day: str, last_day: str) -> Iterator[ExportLine]:
    """Every line of the CST days from ``first_day`` to ``last_day``, both included."""
    for row in reader.stream(_EXPORT, (first_day, last_day)):
        yield ExportLine(**dict(zip(ExportLine.__struct_fields__, row, strict=True)))


def overpayments(reader: Reader) -> list[Overpayment]:
    """Each payment of a repay_no that an earlier transaction had paid, oldest first."""
    return [
        Overpayment(**dict(zip(Overpayment.__struct_fields__, row, strict=True)))
        for row in reader.stream(_OVERPAYMENTS)
    ]
