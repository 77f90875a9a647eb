"""The store contract for a delivery's last failure: its error and where it came from, kept
together, and once the delivery is done, kept as what came before it. Every backend must
pass it (the ``store`` fixture lists them)."""

from __future__ import annotations

import pytest

from arrears_router.store import (
    ClaimedDelivery,
    DeliveryRecord,
    DeliveryResult,
    DeliveryStatus,
    Mode,
    PluginRoute,
    Store,
)
from tests.store.test_deliveries_contract import accept, configure, done, want

pytestmark = pytest.mark.anyio

TRACE = 'Traceback (most recent call last):\n  File "p.py", line 1, in f\nOSError: gone'


def failed(d: ClaimedDelivery, error: str, traceback: str = "",
           status: DeliveryStatus = DeliveryStatus.PENDING) -> DeliveryResult:
    return DeliveryResult(id=d.id, token=d.token, status=status, error=error,
                          traceback=traceback)


async def first_claim(store: Store) -> ClaimedDelivery:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [claimed] = await store.claim(want("a"))
    return claimed


async def record_of(store: Store, delivery_id: int) -> DeliveryRecord:
    record = await store.delivery(delivery_id)
    assert record is not None
    return record


async def test_a_failure_keeps_its_traceback_with_its_error(store: Store) -> None:
    claimed = await first_claim(store)
    await store.finish([failed(claimed, "OSError: gone", TRACE, DeliveryStatus.DEAD)])
    record = await record_of(store, claimed.id)
    assert (record.last_error, record.last_traceback) == ("OSError: gone", TRACE)
    assert (record.error_before_done, record.traceback_before_done) == ("", "")
    assert await store.deliveries_by_transaction("T1") == [record]


async def test_a_later_failure_replaces_both_even_without_a_traceback(store: Store) -> None:
    claimed = await first_claim(store)
    await store.finish([failed(claimed, "OSError: gone", TRACE)])
    [again] = await store.claim(want("a"))
    await store.finish([failed(again, "timed out after 1 s")])
    record = await record_of(store, claimed.id)
    # No traceback of another failure stays beside this one's error.
    assert (record.last_error, record.last_traceback) == ("timed out after 1 s", "")


async def test_once_done_the_last_failure_is_kept_only_as_before_done(store: Store) -> None:
    claimed = await first_claim(store)
    await store.finish([failed(claimed, "OSError: gone", TRACE, DeliveryStatus.DEAD)])
    await store.replay(delivery_id=claimed.id)
    replayed = await record_of(store, claimed.id)
    assert (replayed.status, replayed.last_error) == (DeliveryStatus.PENDING, "OSError: gone")
    [again] = await store.claim(want("a"))
    await store.finish([done(again, note="sent")])
    record = await record_of(store, claimed.id)
    assert (record.status, record.note) == (DeliveryStatus.DONE, "sent")
    assert (record.last_error, record.last_traceback) == ("", "")
    assert (record.error_before_done, record.traceback_before_done) == ("OSError: gone", TRACE)
    [listed] = await store.deliveries(status=DeliveryStatus.DONE)
    assert listed == record
