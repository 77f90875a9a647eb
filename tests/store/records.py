"""Builders of store records for the store tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec

from arrears_router.payment import ArrearsPayment
from arrears_router.store import NewEvent, QuarantineEntry
from arrears_router.wire.envelope import Envelope, decode_payment
from arrears_router.wire.notifier import sample_payload

ENVELOPE = Envelope(appid="wx1", mch_id="m1", nonce_str="n", encrypted_data="", iv="")


def payment(transaction_id: str, mch_id: str = "m1", **changes: object) -> ArrearsPayment:
    plaintext = msgspec.json.encode(sample_payload(transaction_id, **changes))
    return decode_payment(plaintext, msgspec.structs.replace(ENVELOPE, mch_id=mch_id))


def event(p: ArrearsPayment, body: bytes = b"{}") -> NewEvent:
    return NewEvent.of(p, body, datetime.now(UTC))


def entry(body: bytes, errcode: int = 40005, *, digest: bytes | None = None,
          mch_id: str = "m1", received_at: datetime | None = None) -> QuarantineEntry:
    """A quarantined request; by default, one request per distinct body."""
    return QuarantineEntry(
        errcode=errcode, reason="why", appid="wx1", mch_id=mch_id, body=body,
        received_at=received_at or datetime.now(UTC),
        digest=hashlib.sha256(body).digest() if digest is None else digest,
    )
