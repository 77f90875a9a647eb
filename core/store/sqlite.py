"""The embedded store: one SQLite file, WAL, synchronous=FULL, group-committed writes."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from core.payment import ArrearsPayment
from core.protocol import ErrCode
from core.store import (
    Accepted,
    EventRecord,
    NewEvent,
    QuarantineEntry,
    QuarantineRecord,
    StoreError,
)
from core.store.group_commit import GroupCommitter

__all__ = ["SqliteStore"]

T = TypeVar("T")

# Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        appid TEXT NOT NULL,
        mch_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        digest BLOB NOT NULL,
        received_at TEXT NOT NULL,
        payment BLOB NOT NULL,
        envelope BLOB NOT NULL,
        UNIQUE (mch_id, transaction_id)
    );
    CREATE INDEX events_by_transaction ON events (transaction_id);
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        errcode INTEGER NOT NULL,
        reason TEXT NOT NULL,
        appid TEXT NOT NULL,
        mch_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 1,
        body_sha256 BLOB NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    """,
)

# Long enough for another process's short write; short enough to answer WeChat in time.
BUSY_TIMEOUT_MS = 2000

_encode = msgspec.json.encode
_decode_payment = msgspec.json.Decoder(ArrearsPayment).decode


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(
        path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


_QUARANTINE_SQL = """
    INSERT INTO quarantine (errcode, reason, appid, mch_id, transaction_id,
                            first_seen_at, last_seen_at, body_sha256, body)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (body_sha256) DO UPDATE
    SET hits = hits + 1, last_seen_at = excluded.last_seen_at
"""


class SqliteStore:
    """A :class:`core.store.Store` in one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._committer: GroupCommitter[NewEvent | QuarantineEntry, Accepted | None] = (
            GroupCommitter(
                self._commit, setup=self._open_writer, teardown=self._close_writer,
                name="sqlite-writer",
            )
        )

    # -- lifecycle

    async def open(self) -> None:
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(self._committer.start)
            self._reader = await asyncio.to_thread(_connect, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        await asyncio.to_thread(self._committer.stop)
        if self._reader is not None:
            self._reader.close()

    async def ping(self) -> None:
        if not self._committer.alive:
            raise StoreError("the SQLite writer is not running")
        await self._read(lambda db: db.execute("SELECT 1").fetchone())

    # -- writes, on the committer's thread

    def _open_writer(self) -> None:
        self._writer = _connect(self.path)
        _migrate(self._writer)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    async def accept(self, event: NewEvent) -> Accepted:
        result = await self._submit(event)
        assert result is not None
        return result

    async def quarantine(self, entry: QuarantineEntry) -> None:
        await self._submit(entry)

    async def _submit(self, write: NewEvent | QuarantineEntry) -> Accepted | None:
        try:
            return await self._committer.submit(write)
        except (sqlite3.Error, RuntimeError) as exc:
            raise StoreError(f"SQLite commit failed: {exc}") from exc

    def _commit(self, batch: Sequence[NewEvent | QuarantineEntry]) -> list[Accepted | None]:
        db = self._writer
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            results: list[Accepted | None] = []
            for write in batch:
                if isinstance(write, NewEvent):
                    results.append(self._insert_event(db, write))
                else:
                    _quarantine(db, write)
                    results.append(None)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return results

    @staticmethod
    def _insert_event(db: sqlite3.Connection, event: NewEvent) -> Accepted:
        payment = event.payment
        inserted = db.execute(
            "INSERT INTO events (appid, mch_id, transaction_id, digest, received_at, payment,"
            " envelope) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (mch_id, transaction_id) DO NOTHING",
            (
                payment.appid,
                payment.mch_id,
                payment.transaction_id,
                event.digest,
                _timestamp(event.received_at),
                _encode(payment),
                event.envelope,
            ),
        ).rowcount
        if inserted:
            return Accepted.STORED
        (stored_digest,) = db.execute(
            "SELECT digest FROM events WHERE mch_id = ? AND transaction_id = ?",
            (payment.mch_id, payment.transaction_id),
        ).fetchone()
        if stored_digest == event.digest:
            return Accepted.DUPLICATE
        _quarantine(
            db,
            QuarantineEntry(
                errcode=ErrCode.CONFLICTING_DUPLICATE,
                reason="transaction_id already stored with different content",
                appid=payment.appid,
                mch_id=payment.mch_id,
                transaction_id=payment.transaction_id,
                body=event.envelope,
                received_at=event.received_at,
            ),
        )
        return Accepted.CONFLICT

    # -- reads, on a connection of their own

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            assert self._reader is not None, "the store is not open"
            with self._read_lock:
                return query(self._reader)

        try:
            return await asyncio.to_thread(run)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc

    async def events(self, *, limit: int = 50) -> list[EventRecord]:
        rows = await self._read(
            lambda db: db.execute(
                _RECENT_EVENTS, (limit,)
            ).fetchall()
        )
        return [_event_record(row) for row in rows]

    async def events_by_transaction(self, transaction_id: str) -> list[EventRecord]:
        rows = await self._read(
            lambda db: db.execute(
                _EVENTS_BY_TRANSACTION, (transaction_id,)
            ).fetchall()
        )
        return [_event_record(row) for row in rows]

    async def quarantined(self, *, limit: int = 50) -> list[QuarantineRecord]:
        rows = await self._read(
            lambda db: db.execute(
                _RECENT_QUARANTINE, (limit,)
            ).fetchall()
        )
        return [_quarantine_record(row) for row in rows]


def _quarantine(db: sqlite3.Connection, entry: QuarantineEntry) -> None:
    seen_at = _timestamp(entry.received_at)
    db.execute(
        _QUARANTINE_SQL,
        (
            int(entry.errcode),
            entry.reason,
            entry.appid,
            entry.mch_id,
            entry.transaction_id,
            seen_at,
            seen_at,
            hashlib.sha256(entry.body).digest(),
            entry.body,
        ),
    )


_RECENT_EVENTS = "SELECT id, received_at, payment FROM events ORDER BY id DESC LIMIT ?"
_EVENTS_BY_TRANSACTION = (
    "SELECT id, received_at, payment FROM events WHERE transaction_id = ? ORDER BY id"
)
_RECENT_QUARANTINE = (
    "SELECT id, errcode, reason, appid, mch_id, transaction_id, first_seen_at, last_seen_at,"
    " hits, body FROM quarantine ORDER BY last_seen_at DESC, id DESC LIMIT ?"
)


def _event_record(row: tuple[Any, ...]) -> EventRecord:
    id_, received_at, payment = row
    return EventRecord(
        id=id_,
        received_at=datetime.fromisoformat(received_at),
        payment=_decode_payment(payment),
    )


def _quarantine_record(row: tuple[Any, ...]) -> QuarantineRecord:
    id_, errcode, reason, appid, mch_id, transaction_id, first, last, hits, body = row
    return QuarantineRecord(
        id=id_,
        errcode=errcode,
        reason=reason,
        appid=appid,
        mch_id=mch_id,
        transaction_id=transaction_id,
        first_seen_at=datetime.fromisoformat(first),
        last_seen_at=datetime.fromisoformat(last),
        hits=hits,
        body=body,
    )
