"""The embedded store: one SQLite file, WAL, synchronous=FULL, group-committed writes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec

from arrears_router.delivery import EffectRecord
from arrears_router.payment import ArrearsPayment
from arrears_router.store import (
    ATTEMPTS_KEPT,
    REPLAY_PLAN_MAX,
    Accepted,
    AttemptRecord,
    AuditAction,
    AuditEntry,
    ClaimedDelivery,
    ClaimLimit,
    DeliveryRecord,
    DeliveryResult,
    DeliveryStatus,
    EventRecord,
    Mode,
    ModeChange,
    NewEvent,
    PluginRoute,
    PluginState,
    Pruned,
    QuarantineBound,
    QuarantineBounds,
    Quarantined,
    QuarantineEntry,
    QuarantineOverflow,
    QuarantineRecord,
    QuarantineStats,
    ReplayPlan,
    StoreError,
    mode_detail,
    replay_filter,
)
from arrears_router.store.batches import (
    RATE_WINDOW,
    Accept,
    Bookkeeping,
    CommittedWrites,
    Stored,
    Writes,
    conflict_entry,
    delivery_record,
    log_overflow,
)
from arrears_router.store.filters import event_search, newest_page, where_given
from arrears_router.store.group_commit import GroupCommitter
from arrears_router.store.sqlite_schema import (
    BUSY_TIMEOUT_MS,
    MIGRATIONS,
    connect,
    migrate,
    schema_version,
)

__all__ = ["SqliteStore"]

log = logging.getLogger("arrears_router.store")

T = TypeVar("T")

Write = Callable[[sqlite3.Connection], Any] | Accept

LOCK_POLL_S = 0.0005
LOCK_POLL_LONG_S = 0.005
"""How often the writer tries for a write lock another process holds (a worker beside
``serve``): every half millisecond for the first 10 ms, then every 5 (a migration, a prune,
an operator's VACUUM hold it longer, and thousands of tries would only burn a core).
SQLite's own busy handler sleeps between tries in steps growing to 100 ms, long after the
lock is free: measured with a worker draining beside ``serve``, an accept waited up to
530 ms for its BEGIN (p99 180 ms), where most holds last under a millisecond."""


def _begin_immediate(db: sqlite3.Connection) -> None:
    """Take the write lock, trying every :data:`LOCK_POLL_S`, later :data:`LOCK_POLL_LONG_S`,
    while another connection holds it, for ``BUSY_TIMEOUT_MS`` in all (then SQLite's
    "database is locked" is raised)."""
    began = time.monotonic()
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0)
            waited = time.monotonic() - began
            if code & 0xFF != sqlite3.SQLITE_BUSY or waited >= BUSY_TIMEOUT_MS / 1000:
                raise  # not the lock (extended codes too), or held past the bound
        time.sleep(LOCK_POLL_S if waited < 0.01 else LOCK_POLL_LONG_S)


_encode = msgspec.json.encode
_decode_payment = msgspec.json.Decoder(ArrearsPayment).decode
_decode_claims = msgspec.json.Decoder(list[tuple[int, str]]).decode
_decode_rows = msgspec.json.Decoder(list[tuple[int, Any, str]]).decode


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _from_unix(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# The writer thread gives the interpreter lock up in every statement and every row it
# steps through, and waits for it to come back while the event loop is busy: so the writes
# below take and return whole batches in a few statements, lists passed in and out as JSON.
_INSERT_EVENTS = """
    INSERT INTO events (appid, mch_id, transaction_id, digest, received_at, payment, envelope,
                        out_user_id, repay_no)
    VALUES {rows}
    ON CONFLICT (transaction_id, mch_id) DO NOTHING
"""
_LAST_EVENT = "SELECT coalesce(max(id), 0) FROM events"
# New rows take ids above the largest one (SQLite's rowid rule; this transaction holds the
# write lock), so "id > the largest before" lists what one statement inserted.
_EVENTS_AFTER = """
    SELECT json_group_array(json_array(id, mch_id, transaction_id)) FROM events WHERE id > ?
"""
# One delivery per new event and plugin enabled or paused. Those in :born (to an enabled
# plugin that runs after no other) go first, claimed at birth: leased to the caller, their
# first attempt counted; the rest then fill in.
_FAN_OUT_CLAIMED = """
    WITH born (mch_id, transaction_id, plugin, lease) AS (
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(:born))
    INSERT INTO deliveries (event_id, plugin, next_at, created_at, updated_at,
                            attempt, lease_until, token)
    SELECT e.id, p.name, :now, :now, :now, 1, :now + b.lease, :token
    FROM born b
    JOIN events e ON e.transaction_id = b.transaction_id AND e.mch_id = b.mch_id
    JOIN plugins p ON p.name = b.plugin AND p.configured AND p.mode = 'enabled'
    WHERE e.id > :after AND NOT EXISTS (SELECT 1 FROM plugin_after a WHERE a.plugin = p.name)
"""
_FAN_OUT = """
    INSERT INTO deliveries (event_id, plugin, next_at, created_at, updated_at)
    SELECT e.id, p.name, :now, :now, :now
    FROM events e JOIN plugins p ON p.configured AND p.mode IN ('enabled', 'paused')
    WHERE e.id > :after
    ON CONFLICT (event_id, plugin) DO NOTHING
"""
_BORN_CLAIMED = """
    SELECT json_group_array(json_array(id, event_id, plugin)) FROM deliveries
    WHERE event_id > ? AND token = ?
"""
_QUARANTINE_AGAIN = """
    UPDATE quarantine SET hits = hits + 1, last_seen_at = max(last_seen_at, ?)
    WHERE content_sha256 = ?
"""
# Walks at most the bound's number of the merchant's newest rows, on quarantine_recent.
_QUARANTINED_SINCE = """
    SELECT count(*) FROM (SELECT 1 FROM quarantine
                          WHERE appid = ? AND mch_id = ? AND first_seen_at > ? LIMIT ?)
"""
# Reads no body: SQLite takes a blob's length from its row header. Run only for a row that
# passed the rate bound, so at most that often.
_QUARANTINE_BYTES = "SELECT total(length(body)) FROM quarantine"
_QUARANTINE_KEEP = """
    INSERT INTO quarantine (errcode, reason, appid, mch_id, transaction_id,
                            first_seen_at, last_seen_at, content_sha256, body)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_QUARANTINE_COUNT = """
    INSERT INTO quarantine_overflow (appid, mch_id, errcode, bound, count, first_at, last_at)
    VALUES (?, ?, ?, ?, 1, ?, ?)
    ON CONFLICT (appid, mch_id, errcode, bound) DO UPDATE
    SET count = count + 1, last_at = max(last_at, excluded.last_at)
    RETURNING count
"""
_HEARTBEAT = """
    INSERT INTO heartbeat (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at
"""
# Due, not leased, its plugin enabled, and every plugin it runs after done with the payment
# (a dead one holds it); oldest first, so a resumed plugin catches up in order.
_CLAIM = """
    UPDATE deliveries
    SET attempt = attempt + 1, lease_until = :lease_until, token = :token, updated_at = :now
    WHERE id IN (
        SELECT d.id FROM deliveries d
        WHERE d.plugin = :plugin AND d.status = 'pending' AND d.next_at <= :now
          AND (d.lease_until IS NULL OR d.lease_until <= :now)
          AND NOT EXISTS (
              SELECT 1 FROM plugin_after a
              JOIN deliveries b ON b.event_id = d.event_id AND b.plugin = a.after
              WHERE a.plugin = d.plugin AND b.status != 'done')
        ORDER BY d.id LIMIT :limit)
      AND EXISTS (
          SELECT 1 FROM plugins WHERE name = :plugin AND configured AND mode = 'enabled')
    RETURNING id, event_id, attempt
"""
# Outcomes, in one statement whatever their number: :results is a JSON list of them.
_WITH_RESULTS = """
    WITH r (id, token, status, retry_in, error, note, traceback, duration_s) AS (
        SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,
               value ->> 6, value ->> 7
        FROM json_each(:results))
"""
_STILL_HELD = _WITH_RESULTS + """
    SELECT json_group_array(json_array(d.id, d.token))
    FROM r JOIN deliveries d ON d.id = r.id AND d.token = r.token
"""  # noqa: S608 (constant text)
# Each plugin's done count grows by its deliveries this batch makes done: read before
# _FINISH, which ends the claims that tell the outcomes recorded from those that lapsed.
_COUNT_DONE = _WITH_RESULTS + """
    INSERT INTO plugin_done (plugin, count)
    SELECT d.plugin, count(*)
    FROM (SELECT DISTINCT id, token FROM r WHERE status = 'done') done
    JOIN deliveries d ON d.id = done.id AND d.token = done.token
    WHERE d.status != 'done'
    GROUP BY d.plugin
    ON CONFLICT (plugin) DO UPDATE SET count = count + excluded.count
"""  # noqa: S608 (constant text)
# Each outcome recorded joins its delivery's history, before _FINISH ends the claims (and
# while the delivery holds the attempt's number): the slot of its number overwritten, so
# the history stays bounded with nothing deleted here. (WHERE true: the SELECT's join must
# not read ON CONFLICT as its own.)
_RECORD_ATTEMPTS = _WITH_RESULTS + """
    INSERT INTO delivery_attempts (delivery_id, slot, attempt, at, status, error, duration_s)
    SELECT d.id, d.attempt % :kept, d.attempt, :now, r.status, r.error, r.duration_s
    FROM r JOIN deliveries d ON d.id = r.id AND d.token = r.token
    WHERE true
    ON CONFLICT (delivery_id, slot) DO UPDATE
    SET attempt = excluded.attempt, at = excluded.at, status = excluded.status,
        error = excluded.error, duration_s = excluded.duration_s
"""  # noqa: S608 (constant text)
_FINISH = _WITH_RESULTS + """
    UPDATE deliveries
    SET status = r.status, next_at = :now + r.retry_in, lease_until = NULL, token = NULL,
        last_error = coalesce(nullif(r.error, ''), last_error), note = r.note, updated_at = :now,
        last_traceback = CASE r.error WHEN '' THEN last_traceback ELSE r.traceback END
    FROM r WHERE deliveries.id = r.id AND deliveries.token = r.token
"""  # noqa: S608 (constant text)
_DELIVERY_COLUMNS = """
    SELECT d.id, d.event_id, e.mch_id, e.transaction_id, d.plugin, d.status, d.attempt,
           d.next_at, d.last_error, d.note, d.replays, d.created_at, d.updated_at,
           d.last_traceback
    FROM deliveries d JOIN events e ON e.id = d.event_id
"""
_RECENT_EVENTS = "SELECT id, received_at, payment FROM events ORDER BY id DESC LIMIT ?"
_EVENTS_BY_TRANSACTION = (
    "SELECT id, received_at, payment FROM events WHERE transaction_id = ? ORDER BY id"
)
_EVENT_COLUMNS = "SELECT id, received_at, payment FROM events"
# Newest first by when each was recorded, since a replay numbers attempts afresh.
_ATTEMPTS = """
    SELECT attempt, at, status, error, duration_s FROM delivery_attempts
    WHERE delivery_id = ? ORDER BY at DESC, attempt DESC
"""
# A literal, not a parameter: a partial index (pending, dead) serves only a query whose
# WHERE names its value.
_STATUS_IS = {status: f"d.status = '{status}'" for status in DeliveryStatus}
# Every plugin's dead deliveries are read whole on their index, then sorted: they are few
# (they wait for a replay), where the walk back through every delivery that SQLite, with no
# statistics to say how few, would take for the ORDER BY may cross the whole history.
_DEAD_DELIVERY_COLUMNS = _DELIVERY_COLUMNS.replace(
    "FROM deliveries d", "FROM deliveries d INDEXED BY deliveries_dead")
_QUARANTINE_COLUMNS = (
    "SELECT id, errcode, reason, appid, mch_id, transaction_id, first_seen_at, last_seen_at,"
    " hits, body, reingested_at, reingest_errcode, reingest_reason, reingested_by"
    " FROM quarantine"
)
_REINGESTED = """
    UPDATE quarantine
    SET reingested_at = ?, reingest_errcode = ?, reingest_reason = ?, reingested_by = ?
    WHERE id = ?
"""
_AUDIT_COLUMNS = "SELECT id, at, actor, action, target, detail FROM audit"
_QUARANTINE_TOTALS = "SELECT count(*), total(length(body)), total(hits) FROM quarantine"
_QUARANTINE_OVERFLOW = """
    SELECT appid, mch_id, errcode, bound, count, first_at, last_at FROM quarantine_overflow
    ORDER BY last_at DESC
"""
# Pending and dead deliveries are counted on their partial indexes; done ones, nearly all
# of them and pruned once old, are counted as they are done (plugin_done), never scanned.
# The oldest pending is the first entry of the plugin's in the pending index.
_PLUGIN_STATES = """
    WITH pending AS (SELECT plugin, count(*) AS n FROM deliveries
                     WHERE status = 'pending' GROUP BY plugin),
         dead AS (SELECT plugin, count(*) AS n FROM deliveries
                  WHERE status = 'dead' GROUP BY plugin)
    SELECT p.name, p.mode, p.configured, coalesce(pending.n, 0), coalesce(done.count, 0),
           coalesce(dead.n, 0),
           (SELECT d.created_at FROM deliveries d
            WHERE d.plugin = p.name AND d.status = 'pending' ORDER BY d.id LIMIT 1)
    FROM plugins p
    LEFT JOIN pending ON pending.plugin = p.name
    LEFT JOIN plugin_done done ON done.plugin = p.name
    LEFT JOIN dead ON dead.plugin = p.name
    ORDER BY p.name
"""
# A replayed done delivery is pending again: its plugin's done count gives it back.
_UNCOUNT_DONE = """
    UPDATE plugin_done SET count = count - 1
    WHERE plugin = (SELECT plugin FROM deliveries WHERE id = ? AND status = 'done')
"""
# Every replay (by id, by filter, by plan) is this update of the deliveries it selects.
_REPLAY = """
    UPDATE deliveries
    SET status = 'pending', attempt = 0, next_at = ?, lease_until = NULL, token = NULL,
        replays = replays + 1, updated_at = ?
    WHERE {where}
"""
_PLAN = """
    INSERT INTO replay_plans (created_at, actor, plugin, since, until, count)
    VALUES (?, ?, ?, ?, ?, 0)
    RETURNING id
"""
# One past the most a plan may hold, so that too many is told from just enough.
_PLAN_ITEMS = """
    INSERT INTO replay_plan_items (plan_id, delivery_id)
    SELECT ?, id FROM deliveries WHERE {where} ORDER BY id LIMIT ?
"""
_PLAN_DEAD = (
    "status = 'dead' AND id IN (SELECT delivery_id FROM replay_plan_items WHERE plan_id = ?)"
)
_PLAN_COLUMNS = """
    SELECT id, created_at, actor, plugin, since, until, count, ran_at, ran_by, replayed
    FROM replay_plans WHERE id = ?
"""
# Retention walks the oldest ids up, with no index of done deliveries for every insert and
# finish to pay for (see migration 3). The walk ends below the first delivery made at or
# after :before, found by bisecting ids, as created_at grows with them (a delivery is made
# with the time of the transaction that holds the write lock): some 30 lookups of a row by
# id, so a walk that finds little to prune stops there, not at the end of the table. What
# it walks past is the old deliveries kept (pending and dead), few unless a plugin is left
# paused or dead for long. Each row is checked anyway: a clock set back only delays it.
_PRUNE_DONE = """
    DELETE FROM deliveries WHERE id IN (
        WITH RECURSIVE bisect (lo, hi) AS (
            SELECT coalesce((SELECT min(id) FROM deliveries), 0),
                   coalesce((SELECT max(id) FROM deliveries), 0) + 1
            UNION ALL
            SELECT CASE WHEN d.created_at < :before THEN (b.lo + b.hi) / 2 + 1 ELSE b.lo END,
                   CASE WHEN d.created_at < :before THEN b.hi ELSE (b.lo + b.hi) / 2 END
            FROM bisect b JOIN deliveries d ON d.id = (
                SELECT id FROM deliveries WHERE id >= (b.lo + b.hi) / 2 ORDER BY id LIMIT 1)
            WHERE b.lo < b.hi)
        SELECT id FROM deliveries
        WHERE id < (SELECT max(lo) FROM bisect) AND status = 'done'
          AND created_at < :before AND updated_at < :before
        ORDER BY id LIMIT :limit)
    RETURNING id
"""
# A pruned delivery's history goes with it.
_PRUNE_ATTEMPTS = """
    DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT value FROM json_each(?))
"""
# The quarantine is small (its bounds keep it so): walked whole, oldest first.
_PRUNE_QUARANTINE = """
    DELETE FROM quarantine WHERE id IN (
        SELECT id FROM quarantine WHERE last_seen_at < ? ORDER BY id LIMIT ?)
"""


class _FileId(NamedTuple):
    device: int
    inode: int


def _files_of(path: str) -> tuple[str, str, str]:
    """The database file first, then its WAL and the WAL's index."""
    return path, f"{path}-wal", f"{path}-shm"


def _file_id(path: str) -> _FileId | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return _FileId(found.st_dev, found.st_ino)


class SqliteStore(CommittedWrites[sqlite3.Connection]):
    """A :class:`core.store.Store` in one SQLite file.

    Its writes go to the files it opened. If the file at its path is deleted or replaced
    while it runs (an operator's ``rm``, a restore over it), those writes would vanish at the
    next start: from the batch that finds it, every write fails and the store stays so until
    a restart opens what is then at the path. Nothing written to the old file is reported
    kept; WeChat sends the refused notifications again.
    """

    def __init__(self, path: str, *, readonly: bool = False,
                 bounds: QuarantineBounds | None = None) -> None:
        self.path = path
        self.readonly = readonly
        """Reads only, with no write lock ever taken: for inspecting a live store."""
        self.bounds = bounds or QuarantineBounds()
        self.writes = _WRITES
        self._writer: sqlite3.Connection | None = None
        self._opened: dict[str, _FileId | None] = {}
        """The files the writer writes to (:func:`_files_of`), as they were when opened."""
        self._lost = ""
        """Why no write is accepted any more: the store's files are no longer at its path."""
        self._durable = True
        """Whether the writer now syncs each commit (FULL) or leaves it to WAL (NORMAL)."""
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self._committer: GroupCommitter[Write, Any] = GroupCommitter(
            self._commit, setup=self._open_writer, teardown=self._close_writer,
            name="sqlite-writer",
        )

    # -- lifecycle

    async def open(self) -> None:
        if self.readonly:
            await self._open_reader()
            return
        try:
            # Private when the store makes it; an operator's own folder keeps its mode.
            Path(self.path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            await asyncio.to_thread(self._committer.start)
            self._reader = await asyncio.to_thread(connect, self.path)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc

    async def _open_reader(self) -> None:
        try:
            self._reader = await asyncio.to_thread(connect, self.path, readonly=True)
            version = await asyncio.to_thread(schema_version, self._reader)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path} (the router creates it):"
                             f" {exc}") from exc
        if version != len(MIGRATIONS):
            raise StoreError(
                f"the store at {self.path} has schema version {version}; this arrears-router"
                f" reads version {len(MIGRATIONS)}: start the router once to migrate it"
            )

    async def close(self) -> None:
        if not self.readonly:
            await asyncio.to_thread(self._committer.stop)
        if self._reader is not None:
            self._reader.close()

    async def ping(self) -> None:
        """A real, synced write (the heartbeat row), committed as a payment's would be: it
        fails when the file is locked, the disk full, or the file no longer at the path."""
        if not self._committer.alive:
            raise StoreError("the SQLite writer is not running")
        await self._write(_heartbeat)

    def on_work(self, wake: Callable[[], None]) -> None:
        """Another process's writes to the file are found by the dispatcher's poll: SQLite
        has no way to signal them."""

    # -- writes: each is a function of the connection, run in the committer's transaction

    def _open_writer(self) -> None:
        self._writer = connect(self.path)
        migrate(self._writer)
        # From now on only BEGIN IMMEDIATE waits for the lock, polling (_begin_immediate).
        self._writer.execute("PRAGMA busy_timeout = 0")
        self._opened = {name: _file_id(name) for name in _files_of(self.path)}

    def _check_files(self) -> None:
        """Fail unless the path still names the files just written to: a stat each, a
        batch. A WAL or index first made after the store opened is taken as its own."""
        for name, opened in self._opened.items():
            now = _file_id(name)
            if opened is None:
                self._opened[name] = now
            elif now != opened:
                self._lost = (
                    f"the store file {name} was deleted or replaced while the router had it"
                    " open: a payment written now would be lost at restart, so none is"
                    " accepted; restart the router, which then opens what is at that path")
                log.error("%s", self._lost)
                if name == self.path:
                    self._forget_wal()
                raise StoreError(self._lost)

    def _forget_wal(self) -> None:
        """Unlink this writer's WAL and its index from beside a database file not its own:
        SQLite would apply the old file's pages to a file restored there, or newly made."""
        for name in _files_of(self.path)[1:]:
            opened = self._opened[name]
            if opened is not None and _file_id(name) == opened:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def _commit(self, batch: Sequence[Write]) -> list[Any]:
        db = self._writer
        assert db is not None
        if self._lost:
            raise StoreError(self._lost)
        durable = not all(isinstance(w, Bookkeeping) for w in batch)
        if durable != self._durable:  # only outside a transaction, and only when it changes
            db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        _begin_immediate(db)
        try:
            # The batch's payments go in with one statement, not one each: every statement
            # makes this thread take the interpreter lock back from the busy event loop.
            accepts = [w for w in batch if isinstance(w, Accept)]
            stored = _insert_events(db, accepts, self.bounds) if accepts else {}
            results = [stored[id(w)] if isinstance(w, Accept) else w(db) for w in batch]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        # After the commit: a file deleted while it ran is caught, and the batch reported
        # failed, though it was written (to a file gone at the next start).
        self._check_files()
        return results

    async def _submit(self, write: Write) -> Any:
        if self.readonly:
            raise StoreError("the store was opened read-only")
        try:
            return await self._committer.submit(write)
        except (sqlite3.Error, RuntimeError) as exc:
            raise StoreError(f"SQLite commit failed: {exc}") from exc

    async def claim(self, wants: Mapping[str, ClaimLimit]) -> list[ClaimedDelivery]:
        token = secrets.token_hex(8)

        def claim(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            now = time.time()
            claimed = [
                (plugin, *row)
                for plugin, want in wants.items()
                for row in db.execute(_CLAIM, {
                    "plugin": plugin, "now": now, "lease_until": now + want.lease,
                    "token": token, "limit": want.limit,
                })
            ]
            if not claimed:
                return []
            event_ids = list({event_id for _, _, event_id, _ in claimed})
            marks = ",".join("?" * len(event_ids))
            payments = dict(db.execute(
                f"SELECT id, payment FROM events WHERE id IN ({marks})",  # noqa: S608
                event_ids,
            ).fetchall())
            return [(plugin, id_, attempt, payments[event_id])
                    for plugin, id_, event_id, attempt in claimed]

        rows = await self._write(Bookkeeping(claim))
        payments: dict[bytes, ArrearsPayment] = {}  # decoded once, whatever its plugins
        for *_, payment in rows:
            if payment not in payments:
                payments[payment] = _decode_payment(payment)
        return sorted(
            (ClaimedDelivery(id=id_, plugin=plugin, attempt=attempt, token=token,
                             payment=payments[payment])
             for plugin, id_, attempt, payment in rows),
            key=lambda d: d.id,
        )

    async def finish(self, results: Sequence[DeliveryResult]) -> list[bool]:
        encoded = _encode([[r.id, r.token, r.status, r.retry_in, r.error, r.note, r.traceback,
                            r.duration_s] for r in results])
        any_done = any(r.status == DeliveryStatus.DONE for r in results)

        def finish(db: sqlite3.Connection) -> set[tuple[int, str]]:
            now = time.time()
            (held,) = db.execute(_STILL_HELD, {"results": encoded}).fetchone()
            if any_done:
                db.execute(_COUNT_DONE, {"results": encoded})
            db.execute(_RECORD_ATTEMPTS,
                       {"results": encoded, "now": now, "kept": ATTEMPTS_KEPT})
            db.execute(_FINISH, {"results": encoded, "now": now})
            return set(_decode_claims(held))

        recorded = await self._write(Bookkeeping(finish))
        return [(r.id, r.token) in recorded for r in results]

    async def replay(
        self, *, delivery_id: int | None = None, plugin: str | None = None,
        since: datetime | None = None, until: datetime | None = None, actor: str = "cli",
    ) -> int:
        args: list[object]
        if delivery_id is not None:
            where, args = "id = ? AND status != 'pending'", [delivery_id]
            target = f"delivery={delivery_id}"
        else:
            where, args = _dead(plugin, since, until)
            target = replay_filter(plugin, since, until)

        def replay(db: sqlite3.Connection) -> int:
            if delivery_id is not None:  # only one replayed by id may be done
                db.execute(_UNCOUNT_DONE, (delivery_id,))
            count = _replay(db, where, args)
            _audit(db, AuditAction.REPLAY, target, f"{count} replayed", actor)
            return count

        return await self._write(replay)

    async def prune(
        self, *, done_before: datetime, quarantine_before: datetime, limit: int = 500,
    ) -> Pruned:
        # Bookkeeping: a prune lost in a power cut is made again by the next.
        return await self._write(Bookkeeping(partial(
            _prune, done_before.timestamp(), _timestamp(quarantine_before), limit)))

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

    async def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._read(lambda db: db.execute(sql, args).fetchall())

    async def events(self, *, limit: int = 50) -> list[EventRecord]:
        return [_event_record(row) for row in await self._rows(_RECENT_EVENTS, (limit,))]

    async def events_by_transaction(self, transaction_id: str) -> list[EventRecord]:
        rows = await self._rows(_EVENTS_BY_TRANSACTION, (transaction_id,))
        return [_event_record(row) for row in rows]

    async def search_events(
        self, *, transaction_id: str | None = None, out_user_id: str | None = None,
        repay_no: str | None = None, since: datetime | None = None,
        until: datetime | None = None, before: int | None = None, limit: int = 50,
    ) -> list[EventRecord]:
        where, args = event_search(
            "?", transaction_id=transaction_id, out_user_id=out_user_id, repay_no=repay_no,
            since=since and _timestamp(since), until=until and _timestamp(until), before=before)
        rows = await self._rows(
            f"{_EVENT_COLUMNS} WHERE {where} ORDER BY id DESC LIMIT ?", [*args, limit])
        return [_event_record(row) for row in rows]

    async def quarantined(
        self, *, limit: int = 50, before: int | None = None, errcode: int | None = None,
    ) -> list[QuarantineRecord]:
        rows = await self._rows(
            *newest_page(_QUARANTINE_COLUMNS, before, "errcode", errcode, limit, "?"))
        return [_quarantine_record(row) for row in rows]

    async def quarantine_record(self, quarantine_id: int) -> QuarantineRecord | None:
        rows = await self._rows(f"{_QUARANTINE_COLUMNS} WHERE id = ?", (quarantine_id,))
        return _quarantine_record(rows[0]) if rows else None

    async def quarantine_stats(self) -> QuarantineStats:
        def read(db: sqlite3.Connection) -> QuarantineStats:
            rows, size, hits = db.execute(_QUARANTINE_TOTALS).fetchone()
            overflow = [
                QuarantineOverflow(appid=appid, mch_id=mch_id, errcode=errcode,
                                   bound=QuarantineBound(bound), count=count,
                                   first_at=datetime.fromisoformat(first),
                                   last_at=datetime.fromisoformat(last))
                for appid, mch_id, errcode, bound, count, first, last
                in db.execute(_QUARANTINE_OVERFLOW)
            ]
            return QuarantineStats(rows=rows, bytes=int(size), hits=int(hits),
                                   bounds=self.bounds, overflow=overflow)

        return await self._read(read)

    async def plugin_states(self) -> list[PluginState]:
        return [
            PluginState(name=name, mode=Mode(mode), configured=bool(configured),
                        pending=pending, done=done, dead=dead,
                        oldest_pending_at=None if oldest is None else _from_unix(oldest))
            for name, mode, configured, pending, done, dead, oldest
            in await self._rows(_PLUGIN_STATES)
        ]

    async def mode_changes(self, *, limit: int = 50) -> list[ModeChange]:
        rows = await self._rows(
            "SELECT id, plugin, from_mode, to_mode, actor, at FROM mode_changes"
            " ORDER BY id DESC LIMIT ?", (limit,),
        )
        return [
            ModeChange(id=id_, plugin=plugin, from_mode=Mode(old) if old else None,
                       to_mode=Mode(new), actor=actor, at=datetime.fromisoformat(at))
            for id_, plugin, old, new, actor, at in rows
        ]

    async def audit(
        self, *, limit: int = 50, before: int | None = None, action: AuditAction | None = None,
    ) -> list[AuditEntry]:
        rows = await self._rows(*newest_page(_AUDIT_COLUMNS, before, "action", action, limit, "?"))
        return [
            AuditEntry(id=id_, at=datetime.fromisoformat(at), actor=actor,
                       action=AuditAction(action), target=target, detail=detail)
            for id_, at, actor, action, target, detail in rows
        ]

    async def replay_plan(self, plan_id: int) -> ReplayPlan | None:
        return await self._read(partial(_replay_plan, plan_id))

    async def deliveries(
        self, *, plugin: str | None = None, status: DeliveryStatus | None = None,
        since: datetime | None = None, until: datetime | None = None,
        before: int | None = None, limit: int = 50,
    ) -> list[DeliveryRecord]:
        where, args = where_given((
            ("d.plugin = ?", plugin),
            ("d.created_at >= ?", since and since.timestamp()),
            ("d.created_at < ?", until and until.timestamp()),
            ("d.id < ?", before),
        ))
        if status is not None:
            where += f" AND {_STATUS_IS[DeliveryStatus(status)]}"
        columns = (_DEAD_DELIVERY_COLUMNS if status == DeliveryStatus.DEAD and plugin is None
                   else _DELIVERY_COLUMNS)
        rows = await self._rows(
            f"{columns} WHERE {where} ORDER BY d.id DESC LIMIT ?", [*args, limit])
        return [_delivery_record(row) for row in rows]

    async def deliveries_by_transaction(self, transaction_id: str) -> list[DeliveryRecord]:
        rows = await self._rows(
            f"{_DELIVERY_COLUMNS} WHERE e.transaction_id = ? ORDER BY d.id", (transaction_id,))
        return [_delivery_record(row) for row in rows]

    async def delivery(self, delivery_id: int) -> DeliveryRecord | None:
        rows = await self._rows(f"{_DELIVERY_COLUMNS} WHERE d.id = ?", (delivery_id,))
        return _delivery_record(rows[0]) if rows else None

    async def attempts(self, delivery_id: int) -> list[AttemptRecord]:
        return [
            AttemptRecord(attempt=attempt, at=_from_unix(at), status=DeliveryStatus(status),
                          error=error, duration_s=duration_s)
            for attempt, at, status, error, duration_s
            in await self._rows(_ATTEMPTS, (delivery_id,))
        ]

    async def effect(self, key: str) -> EffectRecord | None:
        return await self._read(partial(_effect, key))


# -- the writes


# 9 values a row: 110 rows stay under the 999 variables old SQLite builds allow a statement.
_ROWS_PER_INSERT = 110


def _insert_events(
    db: sqlite3.Connection, accepts: Sequence[Accept], bounds: QuarantineBounds
) -> dict[int, Stored]:
    """Store new payments with their deliveries; tell each write's outcome by its id().
    A conflict goes to quarantine within ``bounds``."""
    token = secrets.token_hex(8)
    stored: dict[int, Stored] = {}
    for start in range(0, len(accepts), _ROWS_PER_INSERT):
        stored.update(_insert_some(db, accepts[start:start + _ROWS_PER_INSERT], token, bounds))
    return stored


def _insert_some(
    db: sqlite3.Connection, accepts: Sequence[Accept], token: str, bounds: QuarantineBounds
) -> dict[int, Stored]:
    rows = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(accepts))
    values: list[object] = []
    for accept in accepts:
        event, p = accept.event, accept.event.payment
        values += (p.appid, p.mch_id, p.transaction_id, event.digest,
                   _timestamp(event.received_at), event.payment_json, event.envelope,
                   p.out_user_id, p.repay_no)
    (last,) = db.execute(_LAST_EVENT).fetchone()
    db.execute(_INSERT_EVENTS.format(rows=rows), values)
    (new_events,) = db.execute(_EVENTS_AFTER, (last,)).fetchone()
    inserted: dict[tuple[str, str], int] = {
        (mch_id, transaction_id): id_ for id_, mch_id, transaction_id in _decode_rows(new_events)
    }
    claimed: dict[int, list[tuple[int, str]]] = {}
    if inserted:
        # The first of the batch's copies of a payment is the one inserted: its leases count.
        firsts = {(a.event.payment.mch_id, a.event.payment.transaction_id): a
                  for a in reversed(accepts)}
        born = [[*key, plugin, lease] for key, accept in firsts.items()
                for plugin, lease in accept.leases.items()]
        now = time.time()
        if born:
            db.execute(_FAN_OUT_CLAIMED, {
                "now": now, "after": last, "token": token,
                "born": _encode(born),
            })
            (rows_json,) = db.execute(_BORN_CLAIMED, (last, token)).fetchone()
            for id_, event_id, plugin in _decode_rows(rows_json):
                claimed.setdefault(event_id, []).append((id_, plugin))
        db.execute(_FAN_OUT, {"now": now, "after": last})
    stored: dict[int, Stored] = {}
    for accept in accepts:
        p = accept.event.payment
        # Later copies, and payments stored before, are told apart from conflicts by digest.
        event_id = inserted.pop((p.mch_id, p.transaction_id), None)
        stored[id(accept)] = (
            Stored(Accepted.STORED, claimed.get(event_id, []), token) if event_id is not None
            else Stored(_compare_stored(db, accept.event, bounds), [], token)
        )
    return stored


def _compare_stored(db: sqlite3.Connection, event: NewEvent, bounds: QuarantineBounds
                    ) -> Accepted:
    payment = event.payment
    (stored_digest,) = db.execute(
        "SELECT digest FROM events WHERE transaction_id = ? AND mch_id = ?",
        (payment.transaction_id, payment.mch_id),
    ).fetchone()
    if stored_digest == event.digest:
        return Accepted.DUPLICATE
    _quarantine(conflict_entry(event), bounds, db)
    return Accepted.CONFLICT


def _quarantine(
    entry: QuarantineEntry, bounds: QuarantineBounds, db: sqlite3.Connection
) -> Quarantined:
    seen_at = _timestamp(entry.received_at)
    if db.execute(_QUARANTINE_AGAIN, (seen_at, entry.digest)).rowcount:
        return Quarantined.AGAIN
    bound = _bound_reached(entry, bounds, db)
    if bound is not None:
        (count,) = db.execute(_QUARANTINE_COUNT, (
            entry.appid, entry.mch_id, int(entry.errcode), bound, seen_at, seen_at,
        )).fetchone()
        log_overflow(entry, bound, count)
        return Quarantined.COUNTED
    db.execute(_QUARANTINE_KEEP, (
        int(entry.errcode), entry.reason, entry.appid, entry.mch_id, entry.transaction_id,
        seen_at, seen_at, entry.digest, entry.body,
    ))
    return Quarantined.KEPT


def _bound_reached(
    entry: QuarantineEntry, bounds: QuarantineBounds, db: sqlite3.Connection
) -> QuarantineBound | None:
    """The bound a new row for ``entry`` would break; its arrival time is the clock."""
    since = _timestamp(entry.received_at - RATE_WINDOW)
    (recent,) = db.execute(_QUARANTINED_SINCE, (
        entry.appid, entry.mch_id, since, bounds.new_per_minute)).fetchone()
    if recent >= bounds.new_per_minute:
        return QuarantineBound.RATE
    (kept,) = db.execute(_QUARANTINE_BYTES).fetchone()
    if kept + len(entry.body) > bounds.max_bytes:
        return QuarantineBound.SIZE
    return None


def _heartbeat(db: sqlite3.Connection) -> None:
    db.execute(_HEARTBEAT, (_timestamp(datetime.now(UTC)),))


def _prune(done_before: float, quarantine_before: str, limit: int, db: sqlite3.Connection
           ) -> Pruned:
    pruned = db.execute(_PRUNE_DONE, {"before": done_before, "limit": limit}).fetchall()
    if pruned:
        db.execute(_PRUNE_ATTEMPTS, (_encode([id_ for (id_,) in pruned]),))
    quarantine = db.execute(_PRUNE_QUARANTINE, (quarantine_before, limit)).rowcount
    return Pruned(deliveries=len(pruned), quarantine=quarantine)


def _effect(key: str, db: sqlite3.Connection) -> EffectRecord | None:
    row = db.execute("SELECT begun_at, done_at FROM effects WHERE idempotency_key = ?",
                     (key,)).fetchone()
    if row is None:
        return None
    begun_at, done_at = row
    return EffectRecord(idempotency_key=key, begun_at=datetime.fromisoformat(begun_at),
                        done_at=None if done_at is None else datetime.fromisoformat(done_at))


def _begin_effect(key: str, db: sqlite3.Connection) -> EffectRecord | None:
    # Read and insert in one transaction of the one writer: of two attempts, one begins.
    earlier = _effect(key, db)
    if earlier is None:
        db.execute("INSERT INTO effects (idempotency_key, begun_at) VALUES (?, ?)",
                   (key, _timestamp(datetime.now(UTC))))
    return earlier


def _end_effect(key: str, done: bool, db: sqlite3.Connection) -> None:
    if done:
        db.execute("UPDATE effects SET done_at = ? WHERE idempotency_key = ? AND done_at IS NULL",
                   (_timestamp(datetime.now(UTC)), key))
    else:
        db.execute("DELETE FROM effects WHERE idempotency_key = ? AND done_at IS NULL", (key,))


def _dead(plugin: str | None, since: datetime | None, until: datetime | None
          ) -> tuple[str, list[object]]:
    """The dead deliveries of ``plugin`` and/or created in [since, until): the condition and
    its arguments."""
    where = "status = 'dead'"
    args: list[object] = []
    for clause, value in (("plugin = ?", plugin),
                          ("created_at >= ?", since and since.timestamp()),
                          ("created_at < ?", until and until.timestamp())):
        if value is not None:
            where += f" AND {clause}"
            args.append(value)
    return where, args


def _replay(db: sqlite3.Connection, where: str, args: Sequence[object]) -> int:
    """Make the deliveries ``where`` selects due now, with a fresh count of attempts: how
    many. Every replay, by id, filter or plan, is this."""
    now = time.time()
    return db.execute(_REPLAY.format(where=where), [now, now, *args]).rowcount


def _plan_replay(plugin: str | None, since: datetime | None, until: datetime | None,
                 actor: str, db: sqlite3.Connection) -> ReplayPlan | None:
    """Keep the ids the filter matches as a new plan; None, keeping nothing, if there are
    more than a plan may hold."""
    (plan_id,) = db.execute(_PLAN, (
        _timestamp(datetime.now(UTC)), actor, plugin, since and _timestamp(since),
        until and _timestamp(until),
    )).fetchone()
    where, args = _dead(plugin, since, until)
    count = db.execute(_PLAN_ITEMS.format(where=where),
                       [plan_id, *args, REPLAY_PLAN_MAX + 1]).rowcount
    if count > REPLAY_PLAN_MAX:
        db.execute("DELETE FROM replay_plan_items WHERE plan_id = ?", (plan_id,))
        db.execute("DELETE FROM replay_plans WHERE id = ?", (plan_id,))
        return None
    db.execute("UPDATE replay_plans SET count = ? WHERE id = ?", (count, plan_id))
    _audit(db, AuditAction.REPLAY_PLAN, str(plan_id),
           f"{count} dead: {replay_filter(plugin, since, until)}", actor)
    return _replay_plan(plan_id, db)


def _run_replay_plan(plan_id: int, actor: str, db: sqlite3.Connection
                     ) -> tuple[ReplayPlan | None, bool]:
    """The plan, and whether this call ran it (not if it had run before)."""
    plan = _replay_plan(plan_id, db)
    if plan is None or plan.ran_at is not None:
        return plan, False
    replayed = _replay(db, _PLAN_DEAD, [plan_id])
    # Run once, its ids are of no more use: a plan's record stays, its up to 100,000 go.
    db.execute("DELETE FROM replay_plan_items WHERE plan_id = ?", (plan_id,))
    db.execute("UPDATE replay_plans SET ran_at = ?, ran_by = ?, replayed = ? WHERE id = ?",
               (_timestamp(datetime.now(UTC)), actor, replayed, plan_id))
    _audit(db, AuditAction.REPLAY_RUN, str(plan_id), f"{replayed} of {plan.count} replayed",
           actor)
    return _replay_plan(plan_id, db), True


def _record_reingest(quarantine_id: int, errcode: int, reason: str, actor: str,
                     db: sqlite3.Connection) -> QuarantineRecord | None:
    if not db.execute(_REINGESTED, (_timestamp(datetime.now(UTC)), errcode, reason, actor,
                                    quarantine_id)).rowcount:
        return None
    _audit(db, AuditAction.REINGEST, str(quarantine_id), f"errcode {errcode}: {reason}", actor)
    return _quarantine_record(
        db.execute(f"{_QUARANTINE_COLUMNS} WHERE id = ?", (quarantine_id,)).fetchone())


def _audit(db: sqlite3.Connection, action: AuditAction, target: str, detail: str, actor: str
           ) -> None:
    db.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
        (_timestamp(datetime.now(UTC)), actor, action, target, detail),
    )


def _audit_mode(db: sqlite3.Connection, plugin: str, old: str | None, new: Mode, actor: str
                ) -> None:
    _audit(db, AuditAction.MODE, plugin, mode_detail(old, new), actor)


def _sync_plugins(routes: Sequence[PluginRoute], db: sqlite3.Connection) -> None:
    db.execute("UPDATE plugins SET configured = 0")
    db.execute("DELETE FROM plugin_after")
    for route in routes:
        row = db.execute(
            "SELECT mode, config_mode FROM plugins WHERE name = ?", (route.name,)
        ).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO plugins (name, mode, config_mode, configured) VALUES (?, ?, ?, 1)",
                (route.name, route.mode, route.mode),
            )
            _audit_mode(db, route.name, None, route.mode, "config")
        elif row[1] != route.mode:  # the config file's mode changed: it wins this once
            db.execute(
                "UPDATE plugins SET mode = ?, config_mode = ?, configured = 1 WHERE name = ?",
                (route.mode, route.mode, route.name),
            )
            if row[0] != route.mode:
                _audit_mode(db, route.name, row[0], route.mode, "config")
        else:
            db.execute("UPDATE plugins SET configured = 1 WHERE name = ?", (route.name,))
        db.executemany(
            "INSERT INTO plugin_after (plugin, after) VALUES (?, ?)",
            [(route.name, after) for after in route.after],
        )


def _set_mode(plugin: str, mode: Mode, actor: str, db: sqlite3.Connection) -> Mode | None:
    row = db.execute(
        "SELECT mode FROM plugins WHERE name = ? AND configured", (plugin,)
    ).fetchone()
    if row is None:
        return None
    if row[0] != mode:
        db.execute("UPDATE plugins SET mode = ? WHERE name = ?", (mode, plugin))
        _audit_mode(db, plugin, row[0], mode, actor)
    return Mode(row[0])


_WRITES = Writes(quarantine=_quarantine, sync_plugins=_sync_plugins, set_mode=_set_mode,
                 begin_effect=_begin_effect, end_effect=_end_effect,
                 plan_replay=_plan_replay, run_replay_plan=_run_replay_plan,
                 record_reingest=_record_reingest)


# -- rows to records


def _event_record(row: tuple[Any, ...]) -> EventRecord:
    id_, received_at, payment = row
    return EventRecord(
        id=id_, received_at=datetime.fromisoformat(received_at), payment=_decode_payment(payment)
    )


def _quarantine_record(row: tuple[Any, ...]) -> QuarantineRecord:
    (id_, errcode, reason, appid, mch_id, transaction_id, first, last, hits, body,
     reingested_at, reingest_errcode, reingest_reason, reingested_by) = row
    return QuarantineRecord(
        id=id_, errcode=errcode, reason=reason, appid=appid, mch_id=mch_id,
        transaction_id=transaction_id, first_seen_at=datetime.fromisoformat(first),
        last_seen_at=datetime.fromisoformat(last), hits=hits, body=body,
        reingested_at=_moment(reingested_at), reingest_errcode=reingest_errcode,
        reingest_reason=reingest_reason or "", reingested_by=reingested_by or "",
    )


def _moment(stored: str | None) -> datetime | None:
    return None if stored is None else datetime.fromisoformat(stored)


def _replay_plan(plan_id: int, db: sqlite3.Connection) -> ReplayPlan | None:
    row = db.execute(_PLAN_COLUMNS, (plan_id,)).fetchone()
    if row is None:
        return None
    id_, created_at, actor, plugin, since, until, count, ran_at, ran_by, replayed = row
    return ReplayPlan(
        id=id_, created_at=datetime.fromisoformat(created_at), actor=actor, plugin=plugin,
        since=_moment(since), until=_moment(until), count=count, ran_at=_moment(ran_at),
        ran_by=ran_by, replayed=replayed,
    )


def _delivery_record(row: tuple[Any, ...]) -> DeliveryRecord:
    (id_, event_id, mch_id, transaction_id, plugin, status, attempt, next_at, last_error, note,
     replays, created_at, updated_at, last_traceback) = row
    return delivery_record(
        id=id_, event_id=event_id, mch_id=mch_id, transaction_id=transaction_id,
        plugin=plugin, status=status, attempt=attempt, next_at=_from_unix(next_at),
        last_error=last_error, note=note, replays=replays, created_at=_from_unix(created_at),
        updated_at=_from_unix(updated_at), last_traceback=last_traceback,
    )
