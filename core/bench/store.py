"""The bench's store, SQLite or PostgreSQL: filled before a router starts, read beside it
while it runs.

The prefill goes through the store's API, except for the done deliveries it gives prefilled
events; while a router runs, the bench only reads its store, for the times the router
recorded. Both go through :class:`~arrears_router.bench.database.Database`, one code path
for either database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import msgspec

from arrears_router.bench.database import Database, unix_seconds
from arrears_router.bench.report import progress
from arrears_router.config import MerchantConfig
from arrears_router.payment import ArrearsPayment
from arrears_router.store import NewEvent, PluginRoute, open_store
from arrears_router.wire.notifier import Notifier, sample_payload

__all__ = ["SETTLE_TIMEOUT_S", "Probe", "prefill", "prefill_done_deliveries", "transaction_ids"]

PREFILL_CHUNK = 5000

SETTLE_POLL_S = 0.01
"""The settle wait's poll: short, as the router's settle time is measured to it."""
SETTLE_TIMEOUT_S = 600.0
"""Longest the bench waits for deliveries to be done before calling the run a failure."""


def transaction_ids(count: int, *, first: int, scatter: bool) -> Iterator[str]:
    """``count`` distinct 28-digit transaction ids, the ``first``-th onwards.

    WeChat Pay's transaction numbers grow with time (they carry the payment date), so new
    payments land at the end of the store's index: by default the ids are in that order.
    ``scatter`` spreads them over the whole key space instead, so that every insert touches
    a random part of an index that may no longer fit in memory: the worst case.
    """
    if not scatter:
        yield from (f"42{n:026d}" for n in range(first, first + count))
        return
    rng = random.Random()
    seen: set[str] = set()
    while len(seen) < count:
        transaction_id = f"42{rng.randrange(10**26):026d}"
        if transaction_id not in seen:
            seen.add(transaction_id)
            yield transaction_id


# -- prefill


async def prefill(url: str, merchant: MerchantConfig, count: int, *, scatter: bool,
                  routes: Sequence[PluginRoute] = ()) -> float:
    """Put ``count`` events in the store through its own API; returns the seconds.

    Each chunk is submitted concurrently, so the group committer writes it in few, large
    transactions, as it would under load. With ``routes`` the store knows those plugins
    first, so each event gets its deliveries to them, as an accepted payment does. With no
    events it still makes the store, for the bench to read beside the router from its start.
    """
    # Every event keeps a real envelope's size; its content is never read back.
    envelope = Notifier(merchant).notification(sample_payload("prefill"))
    received_at = datetime.now(UTC)
    ids = transaction_ids(count, first=0, scatter=scatter)
    store = open_store(url)
    await store.open()
    started = time.perf_counter()
    reported = 0
    try:
        if routes:
            await store.sync_plugins(routes)
        for done in range(0, count, PREFILL_CHUNK):
            chunk = [_prefill_event(merchant, next(ids), envelope, received_at)
                     for _ in range(min(PREFILL_CHUNK, count - done))]
            await asyncio.gather(*(store.accept(event) for event in chunk))
            reported = _report_prefill(done + len(chunk), count, reported, started)
    finally:
        await store.close()
    if count:
        await asyncio.to_thread(_analyze, url)
    return time.perf_counter() - started


def _analyze(url: str) -> None:
    with contextlib.closing(Database(url, readonly=False)) as db:
        db.analyze()


def _prefill_event(merchant: MerchantConfig, transaction_id: str, envelope: bytes,
                   received_at: datetime) -> NewEvent:
    payment = msgspec.convert(
        {**sample_payload(transaction_id), "appid": merchant.appid, "mch_id": merchant.mch_id},
        ArrearsPayment,
    )
    return NewEvent.of(payment, envelope, received_at)


def _report_prefill(done: int, total: int, reported: int, started: float) -> int:
    """One line per 10% done; returns the last tenth reported."""
    tenth = done * 10 // total
    if tenth > reported:
        elapsed = time.perf_counter() - started
        progress(f"prefill {done}/{total} events ({tenth * 10}%), {elapsed:.1f} s,"
                 f" {done / elapsed:,.0f}/s")
    return max(tenth, reported)


_DONE_DELIVERIES = """
    WITH plugin(name) AS (VALUES {names})
    INSERT INTO deliveries (event_id, plugin, status, attempt, next_at, created_at, updated_at)
    SELECT e.id, plugin.name, 'done', 1, ?, ?, ? FROM events e CROSS JOIN plugin
    ORDER BY e.id, plugin.name
"""
# The router counts each plugin's done deliveries as it makes them: counted here alike. (The
# PostgreSQL store keeps its counts in shards, one a writer; shard 0 is this one.)
_RECOUNT_DONE = """
    INSERT INTO plugin_done (plugin, count)
    SELECT plugin, count(*) FROM deliveries WHERE status = 'done' GROUP BY plugin
    ON CONFLICT (plugin) DO UPDATE SET count = excluded.count
"""
_RECOUNT_DONE_SHARDED = """
    INSERT INTO plugin_done (plugin, shard, count)
    SELECT plugin, 0, count(*) FROM deliveries WHERE status = 'done' GROUP BY plugin
    ON CONFLICT (plugin, shard) DO UPDATE SET count = excluded.count
"""


async def prefill_done_deliveries(url: str, plugins: Sequence[str], events: int) -> float:
    """Give every prefilled event a done delivery to each plugin, as a store that has run
    with them holds, so the store's delivery indexes are as big as the events say.

    Direct SQL in the store's schema (before the router starts): the store has no API to
    write finished deliveries, and through claims this would take longer than the run. Its
    times are of the store's own type: unix seconds in SQLite, timestamptz in PostgreSQL.
    """
    if not plugins or not events:
        return 0.0
    progress(f"prefill {events * len(plugins)} done deliveries")
    started = time.perf_counter()
    await asyncio.to_thread(_insert_done_deliveries, url, plugins)
    return time.perf_counter() - started


def _insert_done_deliveries(url: str, plugins: Sequence[str]) -> None:
    with contextlib.closing(Database(url, readonly=False)) as db:
        now: object = datetime.now(UTC) if db.postgres else time.time()
        # Events the outer loop: a payment's deliveries get adjacent ids, as the fan-out
        # gives them.
        statements: list[tuple[str, Sequence[object]]] = [(
            _DONE_DELIVERIES.format(names=",".join(["(?)"] * len(plugins))),
            [*plugins, now, now, now])]
        statements.append((_RECOUNT_DONE_SHARDED if db.postgres else _RECOUNT_DONE, ()))
        db.write(statements)
        db.analyze()


# -- the store, read beside the server


class Probe:
    """A read-only connection to a running router's store: the bench checks the store and
    reads the times it recorded, it never writes to it."""

    def __init__(self, url: str) -> None:
        self._db = Database(url, readonly=True)

    def close(self) -> None:
        self._db.close()

    def backend_pid(self) -> int | None:
        """The PostgreSQL server process serving the probe; None on SQLite."""
        return self._db.backend_pid()

    def last_ids(self) -> tuple[int, int]:
        """The last event's and the last delivery's id (ids grow: later rows are above)."""
        events, deliveries = self._db.one(
            "SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM deliveries)")
        return events or 0, deliveries or 0

    def pending(self, through: int | None = None) -> int:
        """Deliveries pending; with ``through``, of those up to that delivery id only."""
        if through is None:
            (count,) = self._db.one("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        else:
            (count,) = self._db.one("SELECT count(*) FROM deliveries WHERE status = 'pending'"
                                    " AND id <= ?", (through,))
        return int(count)

    def deliveries_through(self, delivery_id: int) -> tuple[int, int]:
        """Deliveries up to ``delivery_id``: how many, and how many of them are done."""
        total, done = self._db.one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'done') FROM deliveries"
            " WHERE id <= ?", (delivery_id,))
        return int(total), int(done)

    def deliveries_since(self, delivery_id: int) -> tuple[int, int]:
        """Deliveries after ``delivery_id``: how many, and how many of them are done."""
        total, done = self._db.one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'done') FROM deliveries"
            " WHERE id > ?", (delivery_id,))
        return int(total), int(done)

    def last_update(self, delivery_id: int, through: int | None = None) -> float | None:
        """When the last of the deliveries after ``delivery_id`` (up to ``through``) changed
        (unix seconds)."""
        if through is None:
            (at,) = self._db.one("SELECT max(updated_at) FROM deliveries WHERE id > ?",
                                 (delivery_id,))
        else:
            (at,) = self._db.one("SELECT max(updated_at) FROM deliveries WHERE id > ?"
                                 " AND id <= ?", (delivery_id, through))
        return None if at is None else unix_seconds(at)

    def enabled_at(self, plugin: str) -> float:
        """When ``plugin`` was last enabled, from the audit log (unix seconds)."""
        (at,) = self._db.one(
            "SELECT at FROM mode_changes WHERE plugin = ? AND to_mode = 'enabled'"
            " ORDER BY id DESC LIMIT 1", (plugin,))
        return unix_seconds(at)

    def done_latencies_ns(self, event_id: int) -> list[int]:
        """For each event after ``event_id`` with deliveries: from its receipt to its last
        delivery's last change. The router wrote both: received_at when the request came
        in, updated_at when the outcome was recorded (in PostgreSQL, its transaction's
        start)."""
        rows = self._db.rows(
            "SELECT e.received_at, max(d.updated_at) FROM events e"
            " JOIN deliveries d ON d.event_id = e.id WHERE e.id > ? GROUP BY e.id",
            (event_id,))
        return [round((unix_seconds(done) - unix_seconds(received)) * 1e9)
                for received, done in rows]

    async def settle(self, delivery_id: int, since: float) -> float:
        """Wait until no delivery is pending; the seconds from ``since`` (unix) to the last
        change of a delivery after ``delivery_id``, 0 if none came after it."""
        started = time.monotonic()
        deadline = started + SETTLE_TIMEOUT_S
        while (pending := self.pending()) > 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {pending} deliveries still pending after"
                                 f" {SETTLE_TIMEOUT_S:g} s")
            # The settle time is the store's record, so the poll only says when to look
            # again: slower as the wait grows (real plugins take seconds), since each look
            # counts the pending rows on the cores the router is using.
            await asyncio.sleep(min(1.0, max(SETTLE_POLL_S, (time.monotonic() - started) / 20)))
        last = self.last_update(delivery_id)
        # A reply may trail its plugins' work by a hair: no negative settle.
        return 0.0 if last is None else max(0.0, last - since)
