"""Durable storage of accepted payments and quarantined requests, behind one protocol.

Backends implement :class:`Store`; nothing outside a backend's module knows its SQL.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol

import msgspec

from core.payment import ArrearsPayment

__all__ = [
    "Accepted",
    "EventRecord",
    "NewEvent",
    "QuarantineEntry",
    "QuarantineRecord",
    "Store",
    "StoreError",
    "open_store",
]


class StoreError(Exception):
    """The store could not do what was asked (unreachable, locked, disk full...)."""


class Accepted(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    """The same payment is already stored; nothing new was written."""
    CONFLICT = "conflict"
    """Another payment with this transaction_id is stored; this one went to quarantine."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    payment: ArrearsPayment
    digest: bytes
    """Identifies the payment's content, so a retry is told apart from a conflict."""
    envelope: bytes
    """The request body as received: WeChat's signature over it stays checkable."""
    received_at: datetime


class QuarantineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An authentic (signed) request that could not be accepted, kept with the reason."""

    errcode: int
    reason: str
    appid: str
    mch_id: str
    body: bytes
    received_at: datetime
    transaction_id: str = ""
    """When the payload could be read that far."""


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    received_at: datetime
    payment: ArrearsPayment


class QuarantineRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    errcode: int
    reason: str
    appid: str
    mch_id: str
    transaction_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    hits: int
    """How many times this exact body arrived (WeChat retries what it is refused)."""
    body: bytes


class Store(Protocol):
    async def open(self) -> None:
        """Connect, and bring the schema up to date."""

    async def close(self) -> None:
        """Finish the writes in flight, then disconnect."""

    async def ping(self) -> None:
        """Raise StoreError unless the store can take writes now."""

    async def accept(self, event: NewEvent) -> Accepted:
        """Store a payment once per (mch_id, transaction_id), durably, before returning.

        A conflicting payment is quarantined in the same transaction. Raises StoreError when
        nothing could be committed.
        """

    async def quarantine(self, entry: QuarantineEntry) -> None:
        """Keep a refused authentic request durably; the same body again only counts a hit."""

    async def events(self, *, limit: int = 50) -> list[EventRecord]:
        """The most recently stored payments first."""

    async def events_by_transaction(self, transaction_id: str) -> list[EventRecord]:
        """Every stored payment with this transaction_id (one per merchant at most)."""

    async def quarantined(self, *, limit: int = 50) -> list[QuarantineRecord]:
        """The most recently quarantined requests first."""


def open_store(url: str) -> Store:
    """The store for ``url``; not yet opened."""
    scheme, sep, path = url.partition(":///")
    if scheme == "sqlite" and sep and path:
        from core.store.sqlite import SqliteStore

        return SqliteStore(path if path.startswith("/") else f"./{path}")
    raise StoreError(f"unsupported store url {url!r}: expected sqlite:///PATH")
