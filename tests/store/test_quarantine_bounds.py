"""The quarantine's bounds: each merchant's new rows a minute and the bodies kept in all.
Past them a request is only counted, per merchant, errcode and bound, and logged sparingly;
the time a request arrived is the clock, so no test waits a minute."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from arrears_router.store import (
    Accepted,
    QuarantineBound,
    QuarantineBounds,
    Quarantined,
    QuarantineOverflow,
)
from arrears_router.store.sqlite import SqliteStore
from arrears_router.store.sqlite_schema import MIGRATIONS, connect, migrate
from tests.store.records import entry, event, payment

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A store allowing 3 new rows a minute per merchant, and 100 bytes of bodies."""
    store = SqliteStore(str(tmp_path / "s.db"),
                        bounds=QuarantineBounds(new_per_minute=3, max_bytes=100))
    await store.open()
    yield store
    await store.close()


async def test_a_merchant_keeps_so_many_new_requests_a_minute_and_the_rest_are_counted(
    small: SqliteStore,
) -> None:
    outcomes = [await small.quarantine(entry(f"r{n}".encode(), received_at=at(n)))
                for n in range(5)]
    assert outcomes == [Quarantined.KEPT] * 3 + [Quarantined.COUNTED] * 2
    # A request kept already still counts its hits; another merchant has its own minute.
    assert await small.quarantine(entry(b"r0", received_at=at(5))) is Quarantined.AGAIN
    assert await small.quarantine(entry(b"s0", mch_id="m2", received_at=at(5))) \
        is Quarantined.KEPT
    # A minute after the first was kept, there is room again.
    assert await small.quarantine(entry(b"r5", received_at=at(60.5))) is Quarantined.KEPT

    stats = await small.quarantine_stats()
    assert (stats.rows, stats.hits) == (5, 6)
    assert stats.overflow == [QuarantineOverflow(
        appid="wx1", mch_id="m1", errcode=40005, bound=QuarantineBound.RATE, count=2,
        first_at=at(3), last_at=at(4))]
    assert {r.body for r in await small.quarantined()} == {b"r0", b"r1", b"r2", b"s0", b"r5"}


async def test_past_the_size_bound_nothing_new_is_kept_for_any_merchant(
    small: SqliteStore,
) -> None:
    forty = b"x" * 39
    assert await small.quarantine(entry(forty + b"1", received_at=at(0))) is Quarantined.KEPT
    assert await small.quarantine(entry(forty + b"2", mch_id="m2", received_at=at(100))) \
        is Quarantined.KEPT
    assert await small.quarantine(entry(forty + b"3", mch_id="m3", received_at=at(200))) \
        is Quarantined.COUNTED
    assert await small.quarantine(entry(b"small", received_at=at(300))) is Quarantined.KEPT
    stats = await small.quarantine_stats()
    assert (stats.rows, stats.bytes) == (3, 85)
    assert [(o.mch_id, o.bound, o.count) for o in stats.overflow] == [
        ("m3", QuarantineBound.SIZE, 1)]


async def test_a_flood_past_a_bound_is_logged_at_1_10_100_not_per_request(
    small: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "arrears_router.store"):
        for n in range(3 + 120):
            await small.quarantine(entry(f"r{n}".encode(), received_at=at(0)))
    counted = [r.getMessage() for r in caplog.records if "only counted" in r.getMessage()]
    assert len(counted) == 3
    assert "rate bound reached: 100 request(s) of mch_id=m1 errcode=40005" in counted[-1]


async def test_a_conflict_re_sent_otherwise_spaced_is_one_row_and_bounded_too(
    tmp_path: Path,
) -> None:
    store = SqliteStore(str(tmp_path / "s.db"),
                        bounds=QuarantineBounds(new_per_minute=1, max_bytes=1000))
    await store.open()
    await store.accept(event(payment("T1")))
    conflicting = payment("T1", total_fee=1)
    assert await store.accept(event(conflicting, b'{"a":1}')) is Accepted.CONFLICT
    assert await store.accept(event(conflicting, b'{ "a" : 1 }')) is Accepted.CONFLICT
    [kept] = await store.quarantined()
    assert (kept.body, kept.hits, kept.transaction_id) == (b'{"a":1}', 2, "T1")
    # Another conflict within the minute: refused alike, only counted.
    await store.accept(event(payment("T2")))
    assert await store.accept(event(payment("T2", total_fee=2))) is Accepted.CONFLICT
    stats = await store.quarantine_stats()
    assert stats.rows == 1
    assert [(o.errcode, o.bound, o.count) for o in stats.overflow] == [
        (40009, QuarantineBound.RATE, 1)]
    await store.close()


async def test_rows_kept_before_the_upgrade_stay_with_their_hits(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with connect(str(path)) as older:  # the schema as the version before this one left it
        migrate(older, MIGRATIONS[:3])
        older.execute(
            "INSERT INTO quarantine (errcode, reason, appid, mch_id, transaction_id,"
            " first_seen_at, last_seen_at, hits, body_sha256, body)"
            " VALUES (40004, 'cannot decrypt', 'wx1', 'm1', '', ?, ?, 7, x'00', x'7b7d')",
            (at(0).isoformat(), at(9).isoformat()))
    older.close()
    store = SqliteStore(str(path))
    await store.open()
    [record] = await store.quarantined()
    assert (record.errcode, record.hits, record.body, record.last_seen_at) == (
        40004, 7, b"{}", at(9))
    assert await store.quarantine(entry(b"new")) is Quarantined.KEPT
    await store.close()
    with pytest.raises(sqlite3.OperationalError):  # no leftover of the table it replaced
        sqlite3.connect(path).execute("SELECT body_sha256 FROM quarantine")
