"""The stored payments a bill is compared with, read through the store's own API.

A payment belongs to the CST day of its ``time_end``, WeChat's time of payment, as it does in
WeChat's bill, and not to the day it reached the router: a notification retried past
midnight still matches its bill. The store finds payments by when they were received, so the
day is read with a window widened by WeChat's retry horizon, then sorted by ``time_end``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta

from arrears_router.payment import CST
from arrears_router.store import EventRecord, Store

__all__ = ["EARLY_MARGIN", "RETRY_HORIZON", "day_of", "stored_on", "stored_with_ids"]

RETRY_HORIZON = timedelta(hours=25)
"""How long after a payment its notification may still arrive: WeChat retries for 24 hours,
and an hour's margin."""
EARLY_MARGIN = timedelta(hours=1)
"""How long before its ``time_end`` a payment may seem received: the clocks' disagreement."""
PAGE = 2000


def day_of(record: EventRecord) -> date:
    """The CST day a stored payment was paid: its ``time_end``, else (not a time) the day
    it was received."""
    moment = record.payment.paid_at or record.received_at
    return moment.astimezone(CST).date()


async def stored_on(store: Store, mch_id: str, day: date) -> dict[str, EventRecord]:
    """The merchant's payments paid on ``day``, by transaction_id."""
    start = datetime.combine(day, time(), CST)
    since, until = start - EARLY_MARGIN, start + timedelta(days=1) + RETRY_HORIZON
    found: dict[str, EventRecord] = {}
    before: int | None = None
    while True:
        page = await store.search_events(since=since, until=until, before=before, limit=PAGE)
        for record in page:
            if record.payment.mch_id == mch_id and day_of(record) == day:
                found[record.payment.transaction_id] = record
        if len(page) < PAGE:
            return found
        before = page[-1].id


async def stored_with_ids(store: Store, mch_id: str,
                          transaction_ids: Iterable[str]) -> dict[str, EventRecord]:
    """Those of ``transaction_ids`` the merchant has stored, whenever they were received
    (a request re-ingested from quarantine days later) and whatever their day."""
    found: dict[str, EventRecord] = {}
    for transaction_id in transaction_ids:
        for record in await store.events_by_transaction(transaction_id):
            if record.payment.mch_id == mch_id:
                found[transaction_id] = record
    return found
