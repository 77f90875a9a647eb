"""The store contract: every backend must pass this suite (the `store` fixture lists them)."""

from __future__ import annotations

import asyncio

import pytest

from arrears_router.store import Accepted, Quarantined, Store
from tests.store.records import entry, event, payment

pytestmark = pytest.mark.anyio


async def test_a_payment_is_stored_once_and_read_back_whole(store: Store) -> None:
    p = payment("T1")
    assert await store.accept(event(p, b'{"raw":1}')) is Accepted.STORED
    [record] = await store.events()
    assert record.payment == p
    assert await store.events_by_transaction("T1") == [record]


async def test_the_same_content_again_is_a_duplicate(store: Store) -> None:
    await store.accept(event(payment("T1")))
    assert await store.accept(event(payment("T1"), b"other nonce")) is Accepted.DUPLICATE
    assert len(await store.events()) == 1


async def test_other_content_is_a_conflict_and_goes_to_quarantine(store: Store) -> None:
    await store.accept(event(payment("T1")))
    assert await store.accept(event(payment("T1", total_fee=1), b"b2")) is Accepted.CONFLICT
    [q] = await store.quarantined()
    assert (q.errcode, q.transaction_id, q.body) == (40009, "T1", b"b2")
    [record] = await store.events()
    assert record.payment.total_fee == 300


async def test_transaction_ids_are_unique_per_merchant(store: Store) -> None:
    assert await store.accept(event(payment("T1", mch_id="m1"))) is Accepted.STORED
    assert await store.accept(event(payment("T1", mch_id="m2"))) is Accepted.STORED
    assert len(await store.events_by_transaction("T1")) == 2


async def test_events_list_newest_first_with_a_limit(store: Store) -> None:
    for n in range(5):
        await store.accept(event(payment(f"T{n}")))
    records = await store.events(limit=3)
    assert [r.payment.transaction_id for r in records] == ["T4", "T3", "T2"]


async def test_quarantine_counts_hits_of_the_same_request_and_keeps_its_first_body(
    store: Store,
) -> None:
    same = b"what the sign covers"
    assert await store.quarantine(entry(b"x", digest=same)) is Quarantined.KEPT
    assert await store.quarantine(entry(b"x  ", digest=same)) is Quarantined.AGAIN
    assert await store.quarantine(entry(b"y", 40004)) is Quarantined.KEPT
    records = await store.quarantined()
    assert sorted((r.body, r.hits, r.errcode) for r in records) == [
        (b"x", 2, 40005), (b"y", 1, 40004)
    ]
    [x] = [r for r in records if r.body == b"x"]
    assert await store.quarantine_record(x.id) == x
    assert await store.quarantine_record(x.id + 100) is None
    stats = await store.quarantine_stats()
    assert (stats.rows, stats.bytes, stats.hits, stats.overflow) == (2, 2, 3, [])


async def test_concurrent_copies_store_exactly_one(store: Store) -> None:
    outcomes = await asyncio.gather(*(store.accept(event(payment("T1"))) for _ in range(100)))
    assert outcomes.count(Accepted.STORED) == 1
    assert outcomes.count(Accepted.DUPLICATE) == 99


async def test_ping_succeeds_on_an_open_store(store: Store) -> None:
    await store.ping()
