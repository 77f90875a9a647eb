"""The shared store: PostgreSQL, for any number of routers and workers on any number of
machines. The same guarantees as the SQLite store, by the same design: one writer
connection per process group-commits every write (a batch of payments is one transaction
and a fixed handful of statements, lists passed as arrays), claims lock with
``FOR UPDATE SKIP LOCKED``, and a committed batch that made work for other processes
wakes them with one NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import msgspec
import psycopg
from psycopg import errors, sql
from psycopg_pool import ConnectionPool, PoolTimeout

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
    SchemaError,
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
from arrears_router.store.postgres_schema import (
    CONNECT_TIMEOUT,
    MIGRATIONS,
    connect,
    connection_options,
    describe_error,
    migrate,
    schema_version,
    set_up_session,
)

__all__ = ["PostgresStore"]

log = logging.getLogger("arrears_router.store")

T = TypeVar("T")
Connection = psycopg.Connection[Any]

_decode_payment = msgspec.json.Decoder(ArrearsPayment).decode

RECONNECT_PAUSE = 0.5
"""Seconds a failed connection attempt is not tried again: in an outage, writes fail at
once (WeChat gets 50001 and sends again) instead of each waiting for a connect timeout."""
_SHARDS = 64
WRITERS = 2
"""Writer connections a process commits through: while one batch waits for its commit
(the WAL flush), the next is already being written."""
_RETRIES = 3
"""Attempts of a batch that lost a deadlock or a serialization race to another process."""


class _Tx:
    """A batch's transaction: its connection, the writer's shard of the done counts, and
    whether it made work that another process's dispatcher may claim (then the batch sends
    one NOTIFY)."""

    __slots__ = ("db", "made_work", "shard")

    def __init__(self, db: Connection, shard: int) -> None:
        self.db = db
        self.shard = shard
        self.made_work = False

    def execute(self, query: Any, params: Any = None) -> psycopg.Cursor[Any]:
        return self.db.execute(query, params)


Write = Callable[[_Tx], Any] | Accept

# Lists go as arrays in binary (%b): as text, psycopg would escape every bytea and the
# conversion would cost more than the rest of the batch. A binary array is of one type:
# numbers are made all float or all int before they go.
# A batch's payments in one statement: stored once per (transaction_id, mch_id), the first
# of the batch's copies winning, each new one fanned out to the plugins enabled or paused;
# those in :lease (an enabled plugin that runs after no other, with room in the storing
# process) are claimed as they are made, leased to the caller with their first attempt
# counted. One row per new payment and delivery comes back.
_STORE_EVENTS = """
    WITH batch AS (
        SELECT * FROM unnest(%(n)b::int[], %(appid)b::text[], %(mch_id)b::text[],
                             %(transaction_id)b::text[], %(digest)b::bytea[],
                             %(received_at)b::timestamptz[], %(payment)b::bytea[],
                             %(envelope)b::bytea[], %(out_user_id)b::text[],
                             %(repay_no)b::text[])
            AS b (n, appid, mch_id, transaction_id, digest, received_at, payment, envelope,
                  out_user_id, repay_no)
    ), stored AS (
        INSERT INTO events (appid, mch_id, transaction_id, digest, received_at, payment,
                            envelope, out_user_id, repay_no)
        SELECT DISTINCT ON (transaction_id, mch_id)
               appid, mch_id, transaction_id, digest, received_at, payment, envelope,
               out_user_id, repay_no
        FROM batch ORDER BY transaction_id, mch_id, n
        ON CONFLICT (transaction_id, mch_id) DO NOTHING
        RETURNING id, mch_id, transaction_id
    ), leases AS (
        SELECT * FROM unnest(%(lease_mch_id)b::text[], %(lease_transaction_id)b::text[],
                             %(lease_plugin)b::text[], %(lease_seconds)b::float8[])
            AS l (mch_id, transaction_id, plugin, seconds)
    ), fan_out AS (
        SELECT s.id AS event_id, p.name AS plugin, l.seconds
        FROM stored s
        JOIN plugins p ON p.configured AND p.mode IN ('enabled', 'paused')
        LEFT JOIN leases l
            ON l.mch_id = s.mch_id AND l.transaction_id = s.transaction_id
            AND l.plugin = p.name AND p.mode = 'enabled'
            AND NOT EXISTS (SELECT 1 FROM plugin_after a WHERE a.plugin = p.name)
    ), made AS (
        INSERT INTO deliveries (event_id, plugin, next_at, created_at, updated_at, attempt,
                                lease_until, token)
        SELECT event_id, plugin, now(), now(), now(),
               CASE WHEN seconds IS NULL THEN 0 ELSE 1 END,
               now() + make_interval(secs => seconds),
               CASE WHEN seconds IS NULL THEN NULL ELSE %(token)s END
        FROM fan_out ORDER BY event_id, plugin
        RETURNING id, event_id, plugin, token IS NOT NULL AS born
    )
    SELECT s.id, s.mch_id, s.transaction_id, m.id, m.plugin, m.born
    FROM stored s LEFT JOIN made m ON m.event_id = s.id
"""
_STORED_DIGESTS = """
    SELECT e.mch_id, e.transaction_id, e.digest
    FROM unnest(%b::text[], %b::text[]) AS k (mch_id, transaction_id)
    JOIN events e ON e.transaction_id = k.transaction_id AND e.mch_id = k.mch_id
"""
_QUARANTINE_AGAIN = """
    UPDATE quarantine SET hits = hits + 1, last_seen_at = greatest(last_seen_at, %s)
    WHERE content_sha256 = %s
"""
_QUARANTINED_SINCE = """
    SELECT count(*) FROM (SELECT 1 FROM quarantine
                          WHERE appid = %s AND mch_id = %s AND first_seen_at > %s LIMIT %s) r
"""
# octet_length reads a stored body's size from its header, never its bytes.
_QUARANTINE_BYTES = "SELECT coalesce(sum(octet_length(body)), 0) FROM quarantine"
# Two processes may keep the same request at once: the second counts a hit.
_QUARANTINE_KEEP = """
    INSERT INTO quarantine (errcode, reason, appid, mch_id, transaction_id,
                            first_seen_at, last_seen_at, content_sha256, body)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (content_sha256) DO UPDATE
    SET hits = quarantine.hits + 1,
        last_seen_at = greatest(quarantine.last_seen_at, excluded.last_seen_at)
    RETURNING xmax = 0
"""
_QUARANTINE_COUNT = """
    INSERT INTO quarantine_overflow AS o (appid, mch_id, errcode, bound, count, first_at,
                                          last_at)
    VALUES (%s, %s, %s, %s, 1, %s, %s)
    ON CONFLICT (appid, mch_id, errcode, bound) DO UPDATE
    SET count = o.count + 1, last_at = greatest(o.last_at, excluded.last_at)
    RETURNING count
"""
_HEARTBEAT = """
    INSERT INTO heartbeat (id, at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = now()
"""
# Each plugin's due deliveries, oldest first, that no other claimer holds: a row locked by
# another process's claim is skipped, not waited for; a lapsed lease is due again. Every
# plugin it runs after must be done with the payment (a dead one holds it).
_CLAIM = """
    WITH wants AS (
        SELECT * FROM unnest(%(plugin)b::text[], %(limit)b::int[], %(lease)b::float8[])
            AS w (plugin, max, lease)
    ), due AS (
        SELECT d.id, w.lease FROM wants w
        JOIN plugins p ON p.name = w.plugin AND p.configured AND p.mode = 'enabled'
        CROSS JOIN LATERAL (
            SELECT d.id FROM deliveries d
            WHERE d.plugin = w.plugin AND d.status = 'pending' AND d.next_at <= now()
              AND (d.lease_until IS NULL OR d.lease_until <= now())
              AND NOT EXISTS (
                  SELECT 1 FROM plugin_after a
                  JOIN deliveries b ON b.event_id = d.event_id AND b.plugin = a.after
                  WHERE a.plugin = d.plugin AND b.status != 'done')
            ORDER BY d.id LIMIT w.max
            FOR UPDATE OF d SKIP LOCKED) d
    )
    UPDATE deliveries d
    SET attempt = d.attempt + 1, lease_until = now() + make_interval(secs => due.lease),
        token = %(token)s, updated_at = now()
    FROM due, events e
    WHERE d.id = due.id AND e.id = d.event_id
    RETURNING d.id, d.plugin, d.attempt, d.event_id, e.payment
"""
# Outcomes, in one statement whatever their number; only under the claim that holds them.
# A delivery under a claim that holds is pending, so each done one here is newly done: its
# plugin's count (this writer's shard) grows in the same statement, and each outcome joins
# its delivery's history: the slot of its attempt's number overwritten, so that the history
# stays bounded with nothing deleted here.
_FINISH = """
    WITH r AS (
        SELECT * FROM unnest(%(id)b::bigint[], %(token)b::text[], %(status)b::text[],
                             %(retry_in)b::float8[], %(error)b::text[], %(note)b::text[],
                             %(traceback)b::text[], %(duration_s)b::float8[])
            AS r (id, token, status, retry_in, error, note, traceback, duration_s)
    ), finished AS (
        UPDATE deliveries d
        SET status = r.status, next_at = now() + make_interval(secs => r.retry_in),
            lease_until = NULL, token = NULL,
            last_error = coalesce(nullif(r.error, ''), d.last_error), note = r.note,
            updated_at = now(),
            last_traceback = CASE r.error WHEN '' THEN d.last_traceback ELSE r.traceback END
        FROM r WHERE d.id = r.id AND d.token = r.token
        RETURNING d.id, r.token, d.plugin, r.status, d.attempt, r.error, r.duration_s
    ), counted AS (
        INSERT INTO plugin_done AS c (plugin, shard, count)
        SELECT plugin, %(shard)s, count(*) FROM finished WHERE status = 'done' GROUP BY plugin
        ON CONFLICT (plugin, shard) DO UPDATE SET count = c.count + excluded.count
    ), attempts AS (
        INSERT INTO delivery_attempts AS a (delivery_id, slot, attempt, at, status, error,
                                            duration_s)
        SELECT id, mod(attempt, %(kept)s), attempt, now(), status, error, duration_s
        FROM finished
        ON CONFLICT (delivery_id, slot) DO UPDATE
        SET attempt = excluded.attempt, at = excluded.at, status = excluded.status,
            error = excluded.error, duration_s = excluded.duration_s
    )
    SELECT f.id, f.token,
           f.status = 'done' AND EXISTS (SELECT 1 FROM plugin_after a WHERE a.after = f.plugin)
    FROM finished f
"""
# Every replay (by id, filter or plan): the deliveries {where} selects made due again with a
# fresh count of attempts; a done one is taken off its plugin's count.
_REPLAY = """
    WITH old AS (
        SELECT id, plugin, status FROM deliveries WHERE {where} FOR UPDATE
    ), replayed AS (
        UPDATE deliveries d
        SET status = 'pending', attempt = 0, next_at = now(), lease_until = NULL,
            token = NULL, replays = d.replays + 1, updated_at = now()
        FROM old WHERE d.id = old.id
        RETURNING old.plugin, old.status
    ), uncounted AS (
        INSERT INTO plugin_done AS c (plugin, shard, count)
        SELECT plugin, %s, -count(*) FROM replayed WHERE status = 'done'
        GROUP BY plugin
        ON CONFLICT (plugin, shard) DO UPDATE SET count = c.count + excluded.count
    )
    SELECT count(*) FROM replayed
"""
_PLAN = """
    INSERT INTO replay_plans (created_at, actor, plugin, since, until, count)
    VALUES (now(), %s, %s, %s, %s, 0)
    RETURNING id
"""
# One past the most a plan may hold, so that too many is told from just enough.
_PLAN_ITEMS = """
    INSERT INTO replay_plan_items (plan_id, delivery_id)
    SELECT %s, id FROM deliveries WHERE {where} ORDER BY id LIMIT %s
"""
_PLAN_DEAD = sql.SQL(
    "status = 'dead' AND id IN (SELECT delivery_id FROM replay_plan_items WHERE plan_id = %s)")
# The plan's row stays locked to the end of the run: of two runs at once, the second finds
# that the first ran it.
_PLAN_RUNS = """
    UPDATE replay_plans SET ran_at = now(), ran_by = %s WHERE id = %s AND ran_at IS NULL
    RETURNING count
"""
_PLAN_COLUMNS = """
    SELECT id, created_at, actor, plugin, since, until, count, ran_at, ran_by, replayed
    FROM replay_plans WHERE id = %s
"""
# Oldest first, below the first delivery made at or after the cutoff: ids grow with
# created_at, so a round with little to prune walks the old rows only, not the table. A row
# another pruner holds is skipped.
_PRUNE_DONE = """
    WITH victims AS (
        SELECT id FROM deliveries
        WHERE id < coalesce((SELECT id FROM deliveries WHERE created_at >= %(before)s
                             ORDER BY id LIMIT 1), 9223372036854775807)
          AND status = 'done' AND updated_at < %(before)s
        ORDER BY id LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM deliveries d USING victims v WHERE d.id = v.id RETURNING d.id
    ), history AS (  -- a pruned delivery's attempts go with it
        DELETE FROM delivery_attempts a USING gone g WHERE a.delivery_id = g.id
    )
    SELECT count(*) FROM gone
"""
_PRUNE_QUARANTINE = """
    WITH gone AS (
        DELETE FROM quarantine WHERE id IN (
            SELECT id FROM quarantine WHERE last_seen_at < %s ORDER BY id LIMIT %s
            FOR UPDATE SKIP LOCKED)
        RETURNING 1
    )
    SELECT count(*) FROM gone
"""
_DELIVERY_COLUMNS = """
    SELECT d.id, d.event_id, e.mch_id, e.transaction_id, d.plugin, d.status, d.attempt,
           d.next_at, d.last_error, d.note, d.replays, d.created_at, d.updated_at,
           d.last_traceback
    FROM deliveries d JOIN events e ON e.id = d.event_id
"""
# A literal, not a parameter: a partial index (pending, dead) serves only a query whose
# WHERE names its value, which a prepared statement's generic plan would not know.
_STATUS_IS = {status: f"d.status = '{status}'" for status in DeliveryStatus}
# A page of deliveries is chosen before its payments are joined: the planner then weighs a
# filter's index (a plugin's few dead ones, say) against the walk back through the ids on
# the deliveries alone, and does not take the walk for the lookups the join would add.
_DELIVERY_PAGE = """
    SELECT d.id, d.event_id, e.mch_id, e.transaction_id, d.plugin, d.status, d.attempt,
           d.next_at, d.last_error, d.note, d.replays, d.created_at, d.updated_at,
           d.last_traceback
    FROM (SELECT * FROM deliveries d WHERE {where} ORDER BY d.id DESC LIMIT %s) d
    JOIN events e ON e.id = d.event_id
    ORDER BY d.id DESC
"""
_EVENT_COLUMNS = "SELECT id, received_at, payment FROM events"
# Newest first by when each was recorded, since a replay numbers attempts afresh.
_ATTEMPTS = """
    SELECT attempt, at, status, error, duration_s FROM delivery_attempts
    WHERE delivery_id = %s ORDER BY at DESC, attempt DESC
"""
_QUARANTINE_COLUMNS = (
    "SELECT id, errcode, reason, appid, mch_id, transaction_id, first_seen_at, last_seen_at,"
    " hits, body, reingested_at, reingest_errcode, reingest_reason, reingested_by"
    " FROM quarantine"
)
_REINGESTED = """
    UPDATE quarantine
    SET reingested_at = now(), reingest_errcode = %s, reingest_reason = %s, reingested_by = %s
    WHERE id = %s
"""
_AUDIT_COLUMNS = "SELECT id, at, actor, action, target, detail FROM audit"
_QUARANTINE_TOTALS = """
    SELECT count(*), coalesce(sum(octet_length(body)), 0), coalesce(sum(hits), 0)
    FROM quarantine
"""
_QUARANTINE_OVERFLOW = """
    SELECT appid, mch_id, errcode, bound, count, first_at, last_at FROM quarantine_overflow
    ORDER BY last_at DESC
"""
# Pending and dead are counted on their partial indexes; done is the plugin's counter. The
# oldest pending is the first entry of the plugin's in the pending index.
_PLUGIN_STATES = """
    WITH pending AS (SELECT plugin, count(*) AS n FROM deliveries
                     WHERE status = 'pending' GROUP BY plugin),
         dead AS (SELECT plugin, count(*) AS n FROM deliveries
                  WHERE status = 'dead' GROUP BY plugin),
         done AS (SELECT plugin, sum(count)::bigint AS n FROM plugin_done GROUP BY plugin)
    SELECT p.name, p.mode, p.configured, coalesce(pending.n, 0), coalesce(done.n, 0),
           coalesce(dead.n, 0),
           (SELECT d.created_at FROM deliveries d
            WHERE d.plugin = p.name AND d.status = 'pending' ORDER BY d.id LIMIT 1)
    FROM plugins p
    LEFT JOIN pending ON pending.plugin = p.name
    LEFT JOIN done ON done.plugin = p.name
    LEFT JOIN dead ON dead.plugin = p.name
    ORDER BY p.name
"""


def _channel(schema: str) -> str:
    """The NOTIFY channel of the store in ``schema``: stores in other schemas of the
    database are other stores."""
    return f"arrears_router.{schema}"


class PostgresStore(CommittedWrites[_Tx]):
    """A :class:`arrears_router.store.Store` in a PostgreSQL database (its current schema),
    shared by every process whose config names it."""

    def __init__(self, url: str, *, readonly: bool = False,
                 bounds: QuarantineBounds | None = None) -> None:
        self.url = url
        self.readonly = readonly
        """Reads only, in read-only transactions: for inspecting a live store."""
        self.bounds = bounds or QuarantineBounds()
        self.writes = _WRITES
        self._writer = threading.local()
        """Each writer thread's connection (``db``) and its row of each plugin's done count
        (``shard``, see migration 1)."""
        self._writer_pids: set[int] = set()
        """This process's writers' backends: the NOTIFYs they send wake no one here."""
        self._down_until = 0.0
        self._down_reason = ""
        self._channel = ""
        self._pool: ConnectionPool[Connection] | None = None
        self._wakes: list[Callable[[], None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listening: asyncio.Task[None] | None = None
        self._committer: GroupCommitter[Write, Any] = GroupCommitter(
            self._commit, setup=self._open_writer, teardown=self._close_writer,
            name="postgres-writer", writers=WRITERS,
        )

    # -- lifecycle

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            if not self.readonly:
                await asyncio.to_thread(self._committer.start)
            self._pool = await asyncio.to_thread(self._open_pool)
            if self.readonly:
                await self._check_version()
        except (psycopg.Error, PoolTimeout, SchemaError) as exc:
            await self.close()
            raise StoreError(f"cannot open the PostgreSQL store: {describe_error(exc)}") from exc
        if self._wakes:
            self._start_listening()

    def _open_pool(self) -> ConnectionPool[Connection]:
        readonly = self.readonly
        # One connection first: a wrong password or host fails here, once, with libpq's
        # reason, rather than as a pool retrying in the background until its timeout.
        with connect(self.url, autocommit=True, readonly=readonly) as probe:
            row = probe.execute("SELECT current_schema()").fetchone()
        if row is None or row[0] is None:
            raise StoreError("the PostgreSQL store has no schema to use: check search_path")
        self._channel = _channel(str(row[0]))

        def configure(connection: Connection) -> None:
            set_up_session(connection, readonly=readonly)

        pool: ConnectionPool[Connection] = ConnectionPool(
            self.url, min_size=1, max_size=4, open=False, name="arrears-router-reads",
            kwargs={"autocommit": True, **connection_options(self.url)},
            configure=configure, check=ConnectionPool.check_connection,
            timeout=CONNECT_TIMEOUT + 1, reconnect_timeout=float("inf"),
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT + 1)
        except BaseException:
            pool.close()
            raise
        return pool

    async def _check_version(self) -> None:
        version = await self._read(schema_version)
        if version != len(MIGRATIONS):
            raise StoreError(
                f"the PostgreSQL store has schema version {version}; this arrears-router reads"
                f" version {len(MIGRATIONS)}: run `arrears-router migrate` or start the router"
                " once to migrate it")

    async def close(self) -> None:
        if self._listening is not None:
            self._listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listening
            self._listening = None
        if not self.readonly:
            await asyncio.to_thread(self._committer.stop)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
            self._pool = None

    async def ping(self) -> None:
        """A real commit of the heartbeat row, through the writer, as a payment's would be:
        it fails while the database does not answer or refuses writes."""
        if not self._committer.alive:
            raise StoreError("the PostgreSQL writer is not running")
        await self._write(_heartbeat)

    def on_work(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` (on this event loop) when another process commits work that a
        dispatcher here may claim: a NOTIFY, at most one per batch that made some."""
        self._wakes.append(wake)
        if self._loop is not None and self._listening is None:
            self._start_listening()

    # -- the writers: a connection each, on the committer's threads

    def _open_writer(self) -> None:
        db = connect(self.url, autocommit=True)
        self._writer.db = db
        self._writer.shard = secrets.randbelow(_SHARDS)
        self._writer_pids.add(db.info.backend_pid)
        migrate(db)

    def _close_writer(self) -> None:
        db: Connection | None = getattr(self._writer, "db", None)
        if db is not None:
            self._writer_pids.discard(db.info.backend_pid)
            db.close()
            self._writer.db = None

    def _connection(self) -> Connection:
        """This writer's connection, made again if it was lost; in an outage, a failed
        attempt is not repeated for :data:`RECONNECT_PAUSE`."""
        db: Connection | None = getattr(self._writer, "db", None)
        if db is not None and not db.closed:
            return db
        if time.monotonic() < self._down_until:
            raise StoreError(self._down_reason)
        try:
            self._open_writer()
        except psycopg.Error as exc:
            self._close_writer()
            self._down_until = time.monotonic() + RECONNECT_PAUSE
            self._down_reason = f"PostgreSQL is unreachable: {describe_error(exc)}"
            raise StoreError(self._down_reason) from exc
        log.info("connected to PostgreSQL again")
        reconnected: Connection = self._writer.db
        return reconnected

    def _commit(self, batch: Sequence[Write]) -> list[Any]:
        db = self._connection()
        # Claims and outcomes alone need not wait for the WAL flush (see Bookkeeping).
        durable = not all(isinstance(w, Bookkeeping) for w in batch)
        for attempt in range(1, _RETRIES + 1):
            try:
                return self._transaction(db, batch, durable)
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == _RETRIES:
                    raise
            except psycopg.OperationalError:
                if db.broken or db.closed:  # killed, or the server went away: a new one next
                    self._close_writer()
                raise
        raise AssertionError("unreachable")

    def _transaction(self, db: Connection, batch: Sequence[Write], durable: bool) -> list[Any]:
        with db.transaction():
            if not durable:
                db.execute("SET LOCAL synchronous_commit = off")
            tx = _Tx(db, self._writer.shard)
            accepts = [w for w in batch if isinstance(w, Accept)]
            stored = _store_events(tx, accepts, self.bounds) if accepts else {}
            results = [stored[id(w)] if isinstance(w, Accept) else w(tx) for w in batch]
            if tx.made_work:  # sent at COMMIT, once for the whole batch
                db.execute("SELECT pg_notify(%s, '')", (self._channel,))
        return results

    async def _submit(self, write: Write) -> Any:
        if self.readonly:
            raise StoreError("the store was opened read-only")
        try:
            return await self._committer.submit(write)
        except (psycopg.Error, RuntimeError) as exc:
            raise StoreError(f"PostgreSQL commit failed: {describe_error(exc)}") from exc

    # -- wake-ups from other processes

    def _start_listening(self) -> None:
        self._listening = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        """LISTEN on the store's channel for as long as it is open, connecting again after
        a fault; every (re)connection wakes the dispatchers once, for what it missed."""
        channel = sql.SQL("LISTEN {}").format(sql.Identifier(self._channel))
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, **connection_options(self.url)
                ) as db:
                    await db.execute(channel)
                    self._wake()
                    async for note in db.notifies():
                        if note.pid not in self._writer_pids:  # its own: it knows
                            self._wake()
            except psycopg.Error as exc:
                log.debug("LISTEN connection lost, polling until it is back: %s", exc)
            await asyncio.sleep(RECONNECT_PAUSE)

    def _wake(self) -> None:
        for wake in self._wakes:
            wake()

    # -- writes

    async def claim(self, wants: Mapping[str, ClaimLimit]) -> list[ClaimedDelivery]:
        if not wants:
            return []
        token = secrets.token_hex(8)
        params = {"plugin": list(wants), "limit": [int(w.limit) for w in wants.values()],
                  "lease": [float(w.lease) for w in wants.values()], "token": token}

        def claim(tx: _Tx) -> list[tuple[Any, ...]]:
            return tx.execute(_CLAIM, params).fetchall()

        rows = await self._write(Bookkeeping(claim))
        payments: dict[int, ArrearsPayment] = {}  # decoded once, whatever its plugins
        claimed = []
        for id_, plugin, attempt, event_id, payment in sorted(rows):
            if event_id not in payments:
                payments[event_id] = _decode_payment(payment)
            claimed.append(ClaimedDelivery(id=id_, plugin=plugin, attempt=attempt, token=token,
                                           payment=payments[event_id]))
        return claimed

    async def finish(self, results: Sequence[DeliveryResult]) -> list[bool]:
        if not results:
            return []
        params = {
            "id": [r.id for r in results], "token": [r.token for r in results],
            "status": [str(r.status) for r in results],
            "retry_in": [float(r.retry_in) for r in results], "error": [r.error for r in results],
            "note": [r.note for r in results], "traceback": [r.traceback for r in results],
            "duration_s": [float(r.duration_s) for r in results], "kept": ATTEMPTS_KEPT,
        }

        def finish(tx: _Tx) -> set[tuple[int, str]]:
            recorded = set()
            for id_, token, releases in tx.execute(_FINISH, {**params, "shard": tx.shard}):
                recorded.add((id_, token))
                tx.made_work |= releases  # a plugin waiting on this one may run now
            return recorded

        recorded = await self._write(Bookkeeping(finish))
        return [(r.id, r.token) in recorded for r in results]

    async def replay(
        self, *, delivery_id: int | None = None, plugin: str | None = None,
        since: datetime | None = None, until: datetime | None = None, actor: str = "cli",
    ) -> int:
        where: sql.Composable
        args: list[object]
        if delivery_id is not None:
            where, args = sql.SQL("id = %s AND status != 'pending'"), [delivery_id]
            target = f"delivery={delivery_id}"
        else:
            where, args = _dead(plugin, since, until)
            target = replay_filter(plugin, since, until)

        def replay(tx: _Tx) -> int:
            count = _replay(tx, where, args)
            _audit(tx, AuditAction.REPLAY, target, f"{count} replayed", actor)
            return count

        return await self._write(replay)

    async def prune(
        self, *, done_before: datetime, quarantine_before: datetime, limit: int = 500,
    ) -> Pruned:
        def prune(tx: _Tx) -> Pruned:
            deliveries = tx.execute(
                _PRUNE_DONE, {"before": done_before, "limit": limit}).fetchone()
            quarantine = tx.execute(_PRUNE_QUARANTINE, (quarantine_before, limit)).fetchone()
            return Pruned(deliveries=deliveries[0] if deliveries else 0,
                          quarantine=quarantine[0] if quarantine else 0)

        # Bookkeeping: a prune lost in a power cut is made again by the next.
        return await self._write(Bookkeeping(prune))

    # -- reads, on the pool's connections

    async def _read(self, query: Callable[[Connection], T]) -> T:
        def run() -> T:
            pool = self._pool
            if pool is None:
                raise StoreError("the store is not open")
            with pool.connection() as db:
                return query(db)

        try:
            return await asyncio.to_thread(run)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"PostgreSQL read failed: {describe_error(exc)}") from exc

    async def _rows(self, query: Any, args: Any = None) -> list[tuple[Any, ...]]:
        return await self._read(lambda db: db.execute(query, args).fetchall())

    async def events(self, *, limit: int = 50) -> list[EventRecord]:
        rows = await self._rows(
            "SELECT id, received_at, payment FROM events ORDER BY id DESC LIMIT %s", (limit,))
        return [_event_record(row) for row in rows]

    async def events_by_transaction(self, transaction_id: str) -> list[EventRecord]:
        rows = await self._rows(
            "SELECT id, received_at, payment FROM events WHERE transaction_id = %s ORDER BY id",
            (transaction_id,))
        return [_event_record(row) for row in rows]

    async def search_events(
        self, *, transaction_id: str | None = None, out_user_id: str | None = None,
        repay_no: str | None = None, since: datetime | None = None,
        until: datetime | None = None, before: int | None = None, limit: int = 50,
    ) -> list[EventRecord]:
        where, args = event_search(
            "%s", transaction_id=transaction_id, out_user_id=out_user_id, repay_no=repay_no,
            since=since, until=until, before=before)
        rows = await self._rows(
            f"{_EVENT_COLUMNS} WHERE {where} ORDER BY id DESC LIMIT %s", [*args, limit])
        return [_event_record(row) for row in rows]

    async def quarantined(
        self, *, limit: int = 50, before: int | None = None, errcode: int | None = None,
    ) -> list[QuarantineRecord]:
        rows = await self._rows(
            *newest_page(_QUARANTINE_COLUMNS, before, "errcode", errcode, limit, "%s"))
        return [_quarantine_record(row) for row in rows]

    async def quarantine_record(self, quarantine_id: int) -> QuarantineRecord | None:
        rows = await self._rows(f"{_QUARANTINE_COLUMNS} WHERE id = %s", (quarantine_id,))
        return _quarantine_record(rows[0]) if rows else None

    async def quarantine_stats(self) -> QuarantineStats:
        def read(db: Connection) -> QuarantineStats:
            with db.transaction():  # one snapshot for the totals and the counters
                totals = db.execute(_QUARANTINE_TOTALS).fetchone()
                assert totals is not None
                overflow = [
                    QuarantineOverflow(appid=appid, mch_id=mch_id, errcode=errcode,
                                       bound=QuarantineBound(bound), count=count,
                                       first_at=first, last_at=last)
                    for appid, mch_id, errcode, bound, count, first, last
                    in db.execute(_QUARANTINE_OVERFLOW)
                ]
            rows, size, hits = totals
            return QuarantineStats(rows=rows, bytes=int(size), hits=int(hits),
                                   bounds=self.bounds, overflow=overflow)

        return await self._read(read)

    async def plugin_states(self) -> list[PluginState]:
        return [
            PluginState(name=name, mode=Mode(mode), configured=configured,
                        pending=pending, done=done, dead=dead, oldest_pending_at=oldest)
            for name, mode, configured, pending, done, dead, oldest
            in await self._rows(_PLUGIN_STATES)
        ]

    async def mode_changes(self, *, limit: int = 50) -> list[ModeChange]:
        rows = await self._rows(
            "SELECT id, plugin, from_mode, to_mode, actor, at FROM mode_changes"
            " ORDER BY id DESC LIMIT %s", (limit,))
        return [
            ModeChange(id=id_, plugin=plugin, from_mode=Mode(old) if old else None,
                       to_mode=Mode(new), actor=actor, at=at)
            for id_, plugin, old, new, actor, at in rows
        ]

    async def audit(
        self, *, limit: int = 50, before: int | None = None, action: AuditAction | None = None,
    ) -> list[AuditEntry]:
        rows = await self._rows(*newest_page(
            _AUDIT_COLUMNS, before, "action", None if action is None else str(action), limit,
            "%s"))
        return [
            AuditEntry(id=id_, at=at, actor=actor, action=AuditAction(action), target=target,
                       detail=detail)
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
            ("d.plugin = %s", plugin),
            ("d.created_at >= %s", since),
            ("d.created_at < %s", until),
            ("d.id < %s", before),
        ))
        if status is not None:
            where += f" AND {_STATUS_IS[DeliveryStatus(status)]}"
        rows = await self._rows(_DELIVERY_PAGE.format(where=where), [*args, limit])
        return [_delivery_record(row) for row in rows]

    async def deliveries_by_transaction(self, transaction_id: str) -> list[DeliveryRecord]:
        rows = await self._rows(
            f"{_DELIVERY_COLUMNS} WHERE e.transaction_id = %s ORDER BY d.id", (transaction_id,))
        return [_delivery_record(row) for row in rows]

    async def delivery(self, delivery_id: int) -> DeliveryRecord | None:
        rows = await self._rows(f"{_DELIVERY_COLUMNS} WHERE d.id = %s", (delivery_id,))
        return _delivery_record(rows[0]) if rows else None

    async def attempts(self, delivery_id: int) -> list[AttemptRecord]:
        return [
            AttemptRecord(attempt=attempt, at=at, status=DeliveryStatus(status), error=error,
                          duration_s=duration_s)
            for attempt, at, status, error, duration_s
            in await self._rows(_ATTEMPTS, (delivery_id,))
        ]

    async def effect(self, key: str) -> EffectRecord | None:
        return await self._read(partial(_effect, key))


# -- the writes, each a function of the batch's transaction


def _store_events(
    tx: _Tx, accepts: Sequence[Accept], bounds: QuarantineBounds
) -> dict[int, Stored]:
    """Store new payments with their deliveries; tell each write's outcome by its id().
    A conflict goes to quarantine within ``bounds``."""
    token = secrets.token_hex(8)
    firsts: dict[tuple[str, str], Accept] = {}
    for accept in accepts:
        p = accept.event.payment
        firsts.setdefault((p.mch_id, p.transaction_id), accept)
    # The first of the batch's copies of a payment is the one stored: its leases count.
    leased = [(key, plugin, seconds) for key, accept in firsts.items()
              for plugin, seconds in accept.leases.items()]
    events = [a.event for a in accepts]
    rows = tx.execute(_STORE_EVENTS, {
        "n": list(range(len(events))),
        "appid": [e.payment.appid for e in events],
        "mch_id": [e.payment.mch_id for e in events],
        "transaction_id": [e.payment.transaction_id for e in events],
        "digest": [e.digest for e in events],
        "received_at": [e.received_at for e in events],
        "payment": [e.payment_json for e in events],
        "envelope": [e.envelope for e in events],
        "out_user_id": [e.payment.out_user_id for e in events],
        "repay_no": [e.payment.repay_no for e in events],
        "lease_mch_id": [key[0] for key, _, _ in leased],
        "lease_transaction_id": [key[1] for key, _, _ in leased],
        "lease_plugin": [plugin for _, plugin, _ in leased],
        "lease_seconds": [float(seconds) for _, _, seconds in leased],
        "token": token,
    }).fetchall()
    inserted: dict[tuple[str, str], int] = {}
    claimed: dict[int, list[tuple[int, str]]] = {}
    for event_id, mch_id, transaction_id, delivery_id, plugin, born in rows:
        inserted[(mch_id, transaction_id)] = event_id
        if delivery_id is None:
            continue
        if born:
            claimed.setdefault(event_id, []).append((delivery_id, plugin))
        else:
            tx.made_work = True  # a delivery some process must claim
    stored: dict[int, Stored] = {}
    others = [a for a in accepts
              if firsts[(a.event.payment.mch_id, a.event.payment.transaction_id)] is not a
              or (a.event.payment.mch_id, a.event.payment.transaction_id) not in inserted]
    digests = _stored_digests(tx, others) if others else {}
    for accept in accepts:
        key = (accept.event.payment.mch_id, accept.event.payment.transaction_id)
        if firsts[key] is accept and key in inserted:
            event_id = inserted[key]
            stored[id(accept)] = Stored(Accepted.STORED, claimed.get(event_id, []), token)
        else:  # later copies, and payments stored before, are told apart from conflicts
            stored[id(accept)] = Stored(
                _compare_stored(tx, accept.event, digests[key], bounds), [], token)
    return stored


def _stored_digests(tx: _Tx, accepts: Sequence[Accept]) -> dict[tuple[str, str], bytes]:
    keys = {(a.event.payment.mch_id, a.event.payment.transaction_id) for a in accepts}
    rows = tx.execute(_STORED_DIGESTS, ([k[0] for k in keys], [k[1] for k in keys]))
    return {(mch_id, transaction_id): bytes(digest) for mch_id, transaction_id, digest in rows}


def _compare_stored(tx: _Tx, event: NewEvent, stored_digest: bytes,
                    bounds: QuarantineBounds) -> Accepted:
    if stored_digest == event.digest:
        return Accepted.DUPLICATE
    _quarantine(conflict_entry(event), bounds, tx)
    return Accepted.CONFLICT


def _quarantine(entry: QuarantineEntry, bounds: QuarantineBounds, tx: _Tx) -> Quarantined:
    seen_at = entry.received_at
    if tx.execute(_QUARANTINE_AGAIN, (seen_at, entry.digest)).rowcount:
        return Quarantined.AGAIN
    bound = _bound_reached(entry, bounds, tx)
    if bound is not None:
        row = tx.execute(_QUARANTINE_COUNT, (
            entry.appid, entry.mch_id, int(entry.errcode), str(bound), seen_at, seen_at,
        )).fetchone()
        assert row is not None
        log_overflow(entry, bound, row[0])
        return Quarantined.COUNTED
    row = tx.execute(_QUARANTINE_KEEP, (
        int(entry.errcode), entry.reason, entry.appid, entry.mch_id, entry.transaction_id,
        seen_at, seen_at, entry.digest, entry.body,
    )).fetchone()
    return Quarantined.KEPT if row is not None and row[0] else Quarantined.AGAIN


def _bound_reached(entry: QuarantineEntry, bounds: QuarantineBounds, tx: _Tx
                   ) -> QuarantineBound | None:
    """The bound a new row for ``entry`` would break; its arrival time is the clock. Several
    processes keeping rows at once may each pass a bound by a row."""
    row = tx.execute(_QUARANTINED_SINCE, (
        entry.appid, entry.mch_id, entry.received_at - RATE_WINDOW, bounds.new_per_minute,
    )).fetchone()
    if row is not None and row[0] >= bounds.new_per_minute:
        return QuarantineBound.RATE
    kept = tx.execute(_QUARANTINE_BYTES).fetchone()
    if kept is not None and int(kept[0]) + len(entry.body) > bounds.max_bytes:
        return QuarantineBound.SIZE
    return None


def _heartbeat(tx: _Tx) -> None:
    tx.execute(_HEARTBEAT)


def _effect(key: str, db: Connection | _Tx) -> EffectRecord | None:
    row = db.execute("SELECT begun_at, done_at FROM effects WHERE idempotency_key = %s",
                     (key,)).fetchone()
    if row is None:
        return None
    begun_at, done_at = row
    return EffectRecord(idempotency_key=key, begun_at=begun_at, done_at=done_at)


def _begin_effect(key: str, tx: _Tx) -> EffectRecord | None:
    # Of processes beginning one key at once, one inserts; the others wait for its commit
    # and then find its record.
    inserted = tx.execute(
        "INSERT INTO effects (idempotency_key, begun_at) VALUES (%s, now())"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING 1", (key,)).fetchone()
    return None if inserted else _effect(key, tx)


def _end_effect(key: str, done: bool, tx: _Tx) -> None:
    if done:
        tx.execute("UPDATE effects SET done_at = now()"
                   " WHERE idempotency_key = %s AND done_at IS NULL", (key,))
    else:
        tx.execute("DELETE FROM effects WHERE idempotency_key = %s AND done_at IS NULL", (key,))


def _dead(plugin: str | None, since: datetime | None, until: datetime | None
          ) -> tuple[sql.Composable, list[object]]:
    """The dead deliveries of ``plugin`` and/or created in [since, until): the condition and
    its arguments."""
    where: sql.Composable = sql.SQL("status = 'dead'")
    args: list[object] = []
    for clause, value in ((sql.SQL("plugin = %s"), plugin),
                          (sql.SQL("created_at >= %s"), since),
                          (sql.SQL("created_at < %s"), until)):
        if value is not None:
            where = sql.SQL("{} AND {}").format(where, clause)
            args.append(value)
    return where, args


def _replay(tx: _Tx, where: sql.Composable, args: Sequence[object]) -> int:
    """Make the deliveries ``where`` selects due now, with a fresh count of attempts, and
    wake the dispatchers: how many. Every replay, by id, filter or plan, is this."""
    row = tx.execute(sql.SQL(_REPLAY).format(where=where), [*args, tx.shard]).fetchone()
    count = int(row[0]) if row else 0
    tx.made_work |= count > 0
    return count


def _plan_replay(plugin: str | None, since: datetime | None, until: datetime | None,
                 actor: str, tx: _Tx) -> ReplayPlan | None:
    """Keep the ids the filter matches as a new plan; None, keeping nothing, if there are
    more than a plan may hold."""
    row = tx.execute(_PLAN, (actor, plugin, since, until)).fetchone()
    assert row is not None
    plan_id = row[0]
    where, args = _dead(plugin, since, until)
    count = tx.execute(sql.SQL(_PLAN_ITEMS).format(where=where),
                       [plan_id, *args, REPLAY_PLAN_MAX + 1]).rowcount
    if count > REPLAY_PLAN_MAX:
        tx.execute("DELETE FROM replay_plan_items WHERE plan_id = %s", (plan_id,))
        tx.execute("DELETE FROM replay_plans WHERE id = %s", (plan_id,))
        return None
    tx.execute("UPDATE replay_plans SET count = %s WHERE id = %s", (count, plan_id))
    _audit(tx, AuditAction.REPLAY_PLAN, str(plan_id),
           f"{count} dead: {replay_filter(plugin, since, until)}", actor)
    return _replay_plan(plan_id, tx)


def _run_replay_plan(plan_id: int, actor: str, tx: _Tx) -> tuple[ReplayPlan | None, bool]:
    """The plan, and whether this call ran it (not if it had run before)."""
    runs = tx.execute(_PLAN_RUNS, (actor, plan_id)).fetchone()
    if runs is None:
        return _replay_plan(plan_id, tx), False
    replayed = _replay(tx, _PLAN_DEAD, [plan_id])
    # Run once, its ids are of no more use: a plan's record stays, its up to 100,000 go.
    tx.execute("DELETE FROM replay_plan_items WHERE plan_id = %s", (plan_id,))
    tx.execute("UPDATE replay_plans SET replayed = %s WHERE id = %s", (replayed, plan_id))
    _audit(tx, AuditAction.REPLAY_RUN, str(plan_id), f"{replayed} of {runs[0]} replayed",
           actor)
    return _replay_plan(plan_id, tx), True


def _record_reingest(quarantine_id: int, errcode: int, reason: str, actor: str, tx: _Tx
                     ) -> QuarantineRecord | None:
    if not tx.execute(_REINGESTED, (errcode, reason, actor, quarantine_id)).rowcount:
        return None
    _audit(tx, AuditAction.REINGEST, str(quarantine_id), f"errcode {errcode}: {reason}", actor)
    row = tx.execute(f"{_QUARANTINE_COLUMNS} WHERE id = %s", (quarantine_id,)).fetchone()
    return None if row is None else _quarantine_record(row)


def _audit(tx: _Tx, action: AuditAction, target: str, detail: str, actor: str) -> None:
    tx.execute("INSERT INTO audit (at, actor, action, target, detail)"
               " VALUES (now(), %s, %s, %s, %s)", (actor, str(action), target, detail))


def _audit_mode(tx: _Tx, plugin: str, old: str | None, new: Mode, actor: str) -> None:
    _audit(tx, AuditAction.MODE, plugin, mode_detail(old, new), actor)
    tx.made_work = True  # a plugin enabled again has deliveries to claim


def _sync_plugins(routes: Sequence[PluginRoute], tx: _Tx) -> None:
    # One process at a time: routers starting together each make their config the truth,
    # one after the other, never interleaved.
    tx.execute("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || %s, 0))",
               ("arrears-router plugins",))
    known = {name: (mode, config_mode) for name, mode, config_mode
             in tx.execute("SELECT name, mode, config_mode FROM plugins FOR UPDATE")}
    tx.execute("UPDATE plugins SET configured = false")
    tx.execute("DELETE FROM plugin_after")
    for route in routes:
        mode = str(route.mode)
        if route.name not in known:
            tx.execute("INSERT INTO plugins (name, mode, config_mode, configured)"
                       " VALUES (%s, %s, %s, true)", (route.name, mode, mode))
            _audit_mode(tx, route.name, None, route.mode, "config")
        elif known[route.name][1] != mode:  # the config file's mode changed: it wins once
            tx.execute("UPDATE plugins SET mode = %s, config_mode = %s, configured = true"
                       " WHERE name = %s", (mode, mode, route.name))
            if known[route.name][0] != mode:
                _audit_mode(tx, route.name, known[route.name][0], route.mode, "config")
        else:
            tx.execute("UPDATE plugins SET configured = true WHERE name = %s", (route.name,))
        if route.after:
            tx.execute("INSERT INTO plugin_after (plugin, after)"
                       " SELECT %s, unnest(%s::text[])", (route.name, list(route.after)))
    tx.made_work = True


def _set_mode(plugin: str, mode: Mode, actor: str, tx: _Tx) -> Mode | None:
    row = tx.execute("SELECT mode FROM plugins WHERE name = %s AND configured FOR UPDATE",
                     (plugin,)).fetchone()
    if row is None:
        return None
    if row[0] != mode:
        tx.execute("UPDATE plugins SET mode = %s WHERE name = %s", (str(mode), plugin))
        _audit_mode(tx, plugin, row[0], mode, actor)
    return Mode(row[0])


_WRITES = Writes(quarantine=_quarantine, sync_plugins=_sync_plugins, set_mode=_set_mode,
                 begin_effect=_begin_effect, end_effect=_end_effect,
                 plan_replay=_plan_replay, run_replay_plan=_run_replay_plan,
                 record_reingest=_record_reingest)


# -- rows to records


def _event_record(row: tuple[Any, ...]) -> EventRecord:
    id_, received_at, payment = row
    return EventRecord(id=id_, received_at=received_at.astimezone(UTC),
                       payment=_decode_payment(payment))


def _quarantine_record(row: tuple[Any, ...]) -> QuarantineRecord:
    (id_, errcode, reason, appid, mch_id, transaction_id, first, last, hits, body,
     reingested_at, reingest_errcode, reingest_reason, reingested_by) = row
    return QuarantineRecord(
        id=id_, errcode=errcode, reason=reason, appid=appid, mch_id=mch_id,
        transaction_id=transaction_id, first_seen_at=first, last_seen_at=last, hits=hits,
        body=bytes(body), reingested_at=reingested_at, reingest_errcode=reingest_errcode,
        reingest_reason=reingest_reason or "", reingested_by=reingested_by or "",
    )


def _replay_plan(plan_id: int, db: Connection | _Tx) -> ReplayPlan | None:
    row = db.execute(_PLAN_COLUMNS, (plan_id,)).fetchone()
    if row is None:
        return None
    id_, created_at, actor, plugin, since, until, count, ran_at, ran_by, replayed = row
    return ReplayPlan(id=id_, created_at=created_at, actor=actor, plugin=plugin, since=since,
                      until=until, count=count, ran_at=ran_at, ran_by=ran_by,
                      replayed=replayed)


def _delivery_record(row: tuple[Any, ...]) -> DeliveryRecord:
    (id_, event_id, mch_id, transaction_id, plugin, status, attempt, next_at, last_error, note,
     replays, created_at, updated_at, last_traceback) = row
    return delivery_record(
        id=id_, event_id=event_id, mch_id=mch_id, transaction_id=transaction_id,
        plugin=plugin, status=status, attempt=attempt, next_at=next_at, last_error=last_error,
        note=note, replays=replays, created_at=created_at, updated_at=updated_at,
        last_traceback=last_traceback,
    )
