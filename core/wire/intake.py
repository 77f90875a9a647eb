"""One notification in, one reply out: decode, find the merchant, verify, decrypt, store.

The order is the security argument: nothing is decrypted before its sign verifies, so
unauthenticated ciphertext never reaches the decryptor (no padding oracle), and only a
request WeChat signed can ever be written (to events or to quarantine).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from arrears_router.errcodes import ErrCode
from arrears_router.payment import ArrearsPayment
from arrears_router.store import Accepted, NewEvent, QuarantineEntry, Store, StoreError
from arrears_router.wire.cipher import DecryptError
from arrears_router.wire.envelope import (
    Envelope,
    PayloadError,
    Reply,
    decode_envelope,
    decode_payment,
    readable_nonce,
)
from arrears_router.wire.merchants import Keys, MerchantBook
from arrears_router.wire.signature import SignatureError, signed_fields

__all__ = ["Intake", "store_unavailable"]

log = logging.getLogger("arrears_router.intake")

_encode = msgspec.json.encode
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
        received_at = datetime.now(UTC)
        try:
            envelope = decode_envelope(body)
        except msgspec.DecodeError as exc:
            return _refuse(ErrCode.INVALID_REQUEST, f"invalid request body: {exc}",
                           readable_nonce(body))
        merchant = self.merchants.find(envelope.appid, envelope.mch_id)
        if merchant is None:
            return _refuse(
                ErrCode.UNKNOWN_MERCHANT,
                f"unknown merchant: appid {envelope.appid!r} with mch_id {envelope.mch_id!r}"
                " is not configured",
                envelope.nonce_str,
            )
        # Cheap checks first: the sign's type before the fields are counted, the count
        # before they are sorted and hashed.
        try:
            sign_type = merchant.sign_type(envelope.sign)
            candidates = merchant.verified_keys(signed_fields(body), envelope.sign, sign_type)
        except SignatureError as exc:
            return _refuse(ErrCode.INVALID_SIGNATURE, f"invalid signature: {exc}",
                           envelope.nonce_str)
        except msgspec.DecodeError as exc:
            return _refuse(ErrCode.INVALID_REQUEST, f"invalid request body: {exc}",
                           envelope.nonce_str)

        def quarantined(errcode: ErrCode, reason: str, transaction_id: str = "") -> QuarantineEntry:
            return QuarantineEntry(
                errcode=errcode, reason=reason, appid=envelope.appid, mch_id=envelope.mch_id,
                transaction_id=transaction_id, body=body, received_at=received_at,
            )

        try:
            payment = _open(envelope, candidates)
        except DecryptError as exc:
            reason = f"cannot decrypt: {exc}"
            return await self._quarantine(quarantined(ErrCode.UNDECRYPTABLE, reason), envelope)
        except PayloadError as exc:
            entry = quarantined(ErrCode.INVALID_PAYLOAD, f"invalid payload: {exc}",
                                exc.transaction_id)
            return await self._quarantine(entry, envelope)

        event = NewEvent.of(payment, body, received_at)
        try:
            accepted = await self.accept(event)
        except StoreError as exc:
            log.error("store failed, answering 50001 so WeChat retries: %s", exc)
            return store_unavailable(envelope.nonce_str)
        if accepted is Accepted.CONFLICT:
            reason = (f"transaction_id {payment.transaction_id!r} is already stored"
                      " with different content")
            log.warning("quarantined errcode=%d mch_id=%s: %s", ErrCode.CONFLICTING_DUPLICATE,
                        envelope.mch_id, reason)
            return Reply(ErrCode.CONFLICTING_DUPLICATE, _clip(reason), envelope.nonce_str)
        if accepted is Accepted.DUPLICATE:
            return Reply(ErrCode.OK, "ok: already stored", envelope.nonce_str)
        return Reply(ErrCode.OK, "ok", envelope.nonce_str)

    async def _quarantine(self, entry: QuarantineEntry, envelope: Envelope) -> Reply:
        try:
            await self.store.quarantine(entry)
        except StoreError as exc:
            log.error("store failed, answering 50001 so WeChat retries: %s", exc)
            return store_unavailable(envelope.nonce_str)
        log.warning("quarantined errcode=%d mch_id=%s: %s", entry.errcode, entry.mch_id,
                    _clip(entry.reason))
        return Reply(entry.errcode, _clip(entry.reason), envelope.nonce_str)


def _open(envelope: Envelope, candidates: list[Keys]) -> ArrearsPayment:
    """The payment, from the first key set whose sign key verified and whose AES key yields
    a payload that decodes. During a rotation two sets may share a sign key; a wrong AES key
    still unpads about once in 256, so a clean unpad alone does not choose the key. When no
    set works, the first set's error says why."""
    first_error: DecryptError | PayloadError | None = None
    for keys in candidates:
        try:
            return decode_payment(keys.aes.decrypt(envelope.encrypted_data, envelope.iv),
                                  envelope)
        except (DecryptError, PayloadError) as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def store_unavailable(nonce_str: str | None) -> Reply:
    """Nothing was kept: WeChat sends the notification again later."""
    return Reply(ErrCode.STORE_UNAVAILABLE, "store unavailable, retry later", nonce_str)


def _refuse(errcode: ErrCode, reason: str, nonce_str: str | None) -> Reply:
    """A request that is not (provably) WeChat's: answered, logged, not stored."""
    reason = _clip(reason)
    log.info("refused errcode=%d: %s", errcode, reason)
    return Reply(errcode, reason, nonce_str)
