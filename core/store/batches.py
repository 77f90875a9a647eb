"""What every backend's group-committed writer shares: the kinds of write in a batch, what a
stored payment comes back as, and how the rows they read become records."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Generic, NamedTuple, TypeVar

from arrears_router.store import (
    Accepted,
    ClaimedDelivery,
    DeliveryRecord,
    DeliveryStatus,
    NewEvent,
    QuarantineBound,
    QuarantineEntry,
)

__all__ = [
    "RATE_WINDOW",
    "Accept",
    "Bookkeeping",
    "Stored",
    "delivery_record",
    "log_overflow",
]

log = logging.getLogger("arrears_router.store")

Connection = TypeVar("Connection")
T = TypeVar("T")

RATE_WINDOW = timedelta(minutes=1)
"""The quarantine's rate bound counts a merchant's new rows in this window."""


class Accept:
    """A payment to store: written with the rest of its batch's payments, in one statement;
    its deliveries to the plugins in ``leases`` are claimed as they are made."""

    __slots__ = ("event", "leases")

    def __init__(self, event: NewEvent, leases: Mapping[str, float]) -> None:
        self.event = event
        self.leases = leases


class Bookkeeping(Generic[Connection, T]):
    """A delivery's claim or outcome. Its commit need not wait for the disk: lost in a power
    cut, a delivery runs once more, which plugins already take (delivery is at least once).
    Payments, quarantine and modes are always synced before anyone is told they are kept.
    """

    __slots__ = ("write",)

    def __init__(self, write: Callable[[Connection], T]) -> None:
        self.write = write

    def __call__(self, db: Connection) -> T:
        return self.write(db)


class Stored(NamedTuple):
    outcome: Accepted
    claimed: list[tuple[int, str]]
    """(delivery id, plugin) of the deliveries claimed at birth."""
    token: str

    def deliveries(self, event: NewEvent) -> list[ClaimedDelivery]:
        return [ClaimedDelivery(id=id_, plugin=plugin, attempt=1, token=self.token,
                                payment=event.payment)
                for id_, plugin in self.claimed]


def delivery_record(
    *, id: int, event_id: int, mch_id: str, transaction_id: str, plugin: str, status: str,
    attempt: int, next_at: datetime, last_error: str, note: str, replays: int,
    created_at: datetime, updated_at: datetime, last_traceback: str,
) -> DeliveryRecord:
    # Once done, the last failure is history: kept under names that say so, not as current.
    done = status == DeliveryStatus.DONE
    return DeliveryRecord(
        id=id, event_id=event_id, mch_id=mch_id, transaction_id=transaction_id, plugin=plugin,
        status=DeliveryStatus(status), attempt=attempt, next_at=next_at,
        last_error="" if done else last_error, note=note, replays=replays,
        created_at=created_at, updated_at=updated_at,
        last_traceback="" if done else last_traceback,
        error_before_done=last_error if done else "",
        traceback_before_done=last_traceback if done else "",
    )


def log_overflow(entry: QuarantineEntry, bound: QuarantineBound, count: int) -> None:
    """Say that a bound was reached, at the 1st, 10th, 100th... request only counted: never
    a line per request of a flood."""
    leading = count
    while leading >= 10 and leading % 10 == 0:
        leading //= 10
    if leading == 1:
        log.warning("quarantine %s bound reached: %d request(s) of mch_id=%s errcode=%d"
                    " only counted, not kept (see `arrears-router quarantine stats`)",
                    bound, count, entry.mch_id, entry.errcode)
