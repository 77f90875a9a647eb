"""One notification in, one reply out: read it (``reading``), then store the payment, or
quarantine an authentic request that cannot be accepted."""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from arrears_router.errcodes import ErrCode
from arrears_router.logs import add_context, log_context
from arrears_router.metrics import count_notification, count_quarantined
from arrears_router.store import (
    Accepted,
    NewEvent,
    Quarantined,
    QuarantineEntry,
    Store,
    StoreError,
)
from arrears_router.wire.envelope import Envelope, Reply
from arrears_router.wire.merchants import MerchantBook
from arrears_router.wire.reading import Refused, read_notification

__all__ = ["Intake", "store_unavailable"]

log = logging.getLogger("arrears_router.intake")

_ERRMSG_LIMIT = 300


def _clip(text: str) -> str:
    """Reasons quote what was sent; keep a hostile value from flooding replies and logs."""
    return text if len(text) <= _ERRMSG_LIMIT else text[: _ERRMSG_LIMIT - 3] + "..."


class Intake:
    def __init__(self, merchants: MerchantBook, store: Store) -> None:
        self.merchants = merchants
        """Replaced whole on a config reload."""
        self.store = store
        self.accept: Callable[[NewEvent], Awaitable[Accepted]] = store.accept
        """Stores a payment durably; the dispatcher's, which also starts its deliveries,
        where this process runs them."""

    async def receive(self, body: bytes) -> Reply:
        # Every line logged while this request is handled, by the store too, carries its id:
        # 48 random bits, from a generator that costs no system call a request.
        with log_context(request_id=f"{random.getrandbits(48):012x}"):
            reply = await self._receive(body, quarantine=True)
        count_notification(reply.errcode)  # here, where its reply is decided: once
        return reply

    async def reingest(self, body: bytes) -> Reply:
        """A quarantined request's ``body`` read again, with the merchants as they are now:
        stored as a notification is, or refused with the reason now. WeChat did not send it
        again, so it is neither counted as a notification nor quarantined (a hit) again."""
        with log_context(request_id=f"{random.getrandbits(48):012x}"):
            return await self._receive(body, quarantine=False)

    async def _receive(self, body: bytes, *, quarantine: bool) -> Reply:
        received_at, started = datetime.now(UTC), time.perf_counter()
        try:
            envelope, payment = read_notification(body, self.merchants)
        except Refused as refused:
            # Not provably WeChat's, or a re-ingest: answered, logged, not kept.
            if refused.envelope is None or not quarantine:
                return _refuse(refused)
            add_context(mch_id=refused.envelope.mch_id)
            if refused.transaction_id:
                add_context(transaction_id=refused.transaction_id)
            return await self._quarantine(QuarantineEntry(
                errcode=refused.errcode, reason=refused.reason, appid=refused.envelope.appid,
                mch_id=refused.envelope.mch_id, transaction_id=refused.transaction_id,
                body=body, received_at=received_at, digest=_signed_digest(refused.signed),
            ), refused.envelope)
        add_context(mch_id=payment.mch_id, transaction_id=payment.transaction_id)
        event = NewEvent.of(payment, body, received_at)
        try:
            accepted = await self.accept(event)
        except StoreError as exc:
            log.error("store failed, answering 50001 so WeChat retries: %s", exc,
                      extra={"errcode": ErrCode.STORE_UNAVAILABLE})
            return store_unavailable(envelope.nonce_str)
        if accepted is Accepted.CONFLICT:
            count_quarantined(ErrCode.CONFLICTING_DUPLICATE)  # in the payment's transaction
            reason = (f"transaction_id {payment.transaction_id!r} is already stored"
                      " with different content")
            log.warning("quarantined errcode=%d mch_id=%s: %s", ErrCode.CONFLICTING_DUPLICATE,
                        envelope.mch_id, reason, extra={"errcode": ErrCode.CONFLICTING_DUPLICATE})
            return Reply(ErrCode.CONFLICTING_DUPLICATE, _clip(reason), envelope.nonce_str)
        if log.isEnabledFor(logging.DEBUG):  # a line per payment only when asked for
            log.debug("accepted%s", ": already stored" * (accepted is Accepted.DUPLICATE),
                      extra={"errcode": ErrCode.OK,
                             "duration_s": time.perf_counter() - started})
        if accepted is Accepted.DUPLICATE:
            return Reply(ErrCode.OK, "ok: already stored", envelope.nonce_str)
        return Reply(ErrCode.OK, "ok", envelope.nonce_str)

    async def _quarantine(self, entry: QuarantineEntry, envelope: Envelope) -> Reply:
        try:
            outcome = await self.store.quarantine(entry)
        except StoreError as exc:
            log.error("store failed, answering 50001 so WeChat retries: %s", exc,
                      extra={"errcode": ErrCode.STORE_UNAVAILABLE})
            return store_unavailable(envelope.nonce_str)
        count_quarantined(entry.errcode)
        # The same errcode whatever was kept: WeChat sends a refused request again.
        log.warning("quarantined errcode=%d mch_id=%s (%s): %s", entry.errcode, entry.mch_id,
                    _OUTCOMES[outcome], _clip(entry.reason), extra={"errcode": entry.errcode})
        return Reply(entry.errcode, _clip(entry.reason), envelope.nonce_str)


_OUTCOMES = {
    Quarantined.KEPT: "kept",
    Quarantined.AGAIN: "kept already, a hit counted",
    Quarantined.COUNTED: "a bound reached: only counted",
}
_canonical = msgspec.json.Encoder()


def _signed_digest(fields: dict[str, str]) -> bytes:
    """Identifies a signed request as its sign sees it: its signed fields, sorted and encoded
    unambiguously (the signing string is not: a value may hold ``&`` and ``=``). Spacing,
    padding, field order, the sign's case or algorithm change nothing; a new nonce does."""
    return hashlib.sha256(_canonical.encode(sorted(fields.items()))).digest()


def store_unavailable(nonce_str: str | None) -> Reply:
    """Nothing was kept: WeChat sends the notification again later."""
    return Reply(ErrCode.STORE_UNAVAILABLE, "store unavailable, retry later", nonce_str)


def _refuse(refused: Refused) -> Reply:
    reason = _clip(refused.reason)
    log.info("refused errcode=%d: %s", refused.errcode, reason,
             extra={"errcode": refused.errcode})
    return Reply(refused.errcode, reason, refused.nonce_str)
