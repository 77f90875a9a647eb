"""Reading a notification: decode it, find its merchant, verify its sign, decrypt, decode the
payment. No I/O: the intake stores what this reads, ``arrears-router verify`` explains it.

The order is the security argument: nothing is decrypted before its sign verifies, so
unauthenticated ciphertext never reaches the decryptor (no padding oracle), and only a
request WeChat signed can be kept (as a payment, or in quarantine). Cheap checks come first:
the sign's type before the fields are counted, their count before they are sorted and hashed.
"""

from __future__ import annotations

import msgspec

from arrears_router.errcodes import ErrCode
from arrears_router.payment import ArrearsPayment
from arrears_router.wire.cipher import DecryptError
from arrears_router.wire.envelope import (
    Envelope,
    PayloadError,
    decode_envelope,
    decode_payment,
    readable_nonce,
)
from arrears_router.wire.merchants import Keys, MerchantBook
from arrears_router.wire.signature import SignatureError, signed_fields

__all__ = ["Refused", "read_notification"]


class Refused(Exception):
    """Why a notification cannot be accepted, as its reply says it."""

    def __init__(self, errcode: ErrCode, reason: str, nonce_str: str | None, *,
                 envelope: Envelope | None = None, signed: dict[str, str] | None = None,
                 transaction_id: str = "") -> None:
        super().__init__(reason)
        self.errcode = errcode
        self.reason = reason
        self.nonce_str = nonce_str
        self.envelope = envelope
        """Set when WeChat signed the request: it must be kept, in quarantine."""
        self.signed = signed or {}
        """The fields its sign covers, when WeChat signed it: what identifies it in quarantine."""
        self.transaction_id = transaction_id


def read_notification(body: bytes, merchants: MerchantBook) -> tuple[Envelope, ArrearsPayment]:
    """The envelope and the payment of a notification WeChat signed; :class:`Refused` else."""
    try:
        envelope = decode_envelope(body)
    except msgspec.DecodeError as exc:
        raise Refused(ErrCode.INVALID_REQUEST, f"invalid request body: {exc}",
                      readable_nonce(body)) from None
    merchant = merchants.find(envelope.appid, envelope.mch_id)
    if merchant is None:
        raise Refused(
            ErrCode.UNKNOWN_MERCHANT,
            f"unknown merchant: appid {envelope.appid!r} with mch_id {envelope.mch_id!r}"
            " is not configured",
            envelope.nonce_str,
        )
    try:
        sign_type = merchant.sign_type(envelope.sign)
        fields = signed_fields(body)
        candidates = merchant.verified_keys(fields, envelope.sign, sign_type)
    except SignatureError as exc:
        raise Refused(ErrCode.INVALID_SIGNATURE, f"invalid signature: {exc}",
                      envelope.nonce_str) from None
    except msgspec.DecodeError as exc:
        raise Refused(ErrCode.INVALID_REQUEST, f"invalid request body: {exc}",
                      envelope.nonce_str) from None
    try:
        return envelope, open_payment(envelope, candidates)
    except DecryptError as exc:
        raise Refused(ErrCode.UNDECRYPTABLE, f"cannot decrypt: {exc}", envelope.nonce_str,
                      envelope=envelope, signed=fields) from None
    except PayloadError as exc:
        raise Refused(ErrCode.INVALID_PAYLOAD, f"invalid payload: {exc}", envelope.nonce_str,
                      envelope=envelope, signed=fields,
                      transaction_id=exc.transaction_id) from None


def open_payment(envelope: Envelope, candidates: list[Keys]) -> ArrearsPayment:
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
