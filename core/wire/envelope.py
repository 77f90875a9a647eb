"""The notification envelope, its decrypted payload, and the reply."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from arrears_router.payment import ArrearsPayment, Order, parse_time_end

__all__ = [
    "Envelope",
    "PayloadError",
    "Reply",
    "decode_envelope",
    "decode_payment",
    "encode_reply",
    "readable_nonce",
]


class Envelope(msgspec.Struct):
    """The request body. Unknown fields are allowed: they are signed but otherwise ignored."""

    appid: str
    mch_id: str
    nonce_str: str
    encrypted_data: str
    iv: str
    sign: str = ""
    """Optional here so that a missing sign is answered as a signature error, not a bad body."""


class Reply(msgspec.Struct, omit_defaults=True):
    errcode: int
    errmsg: str
    nonce_str: str | None = None


class _NonceOnly(msgspec.Struct):
    nonce_str: str | None = None


class PayloadError(ValueError):
    """The decrypted payload is not a valid payment; the message names the field."""

    def __init__(self, message: str, transaction_id: str = "") -> None:
        super().__init__(message)
        self.transaction_id = transaction_id


_envelope_decoder = msgspec.json.Decoder(Envelope)
_nonce_decoder = msgspec.json.Decoder(_NonceOnly)
_any_decoder = msgspec.json.Decoder()
_reply_encoder = msgspec.json.Encoder()


TOO_DEEP = "JSON nested too deeply"


def decode_envelope(body: bytes) -> Envelope:
    """Raises msgspec.DecodeError (its message says what and where) for a bad body."""
    try:
        return _envelope_decoder.decode(body)
    except RecursionError:  # msgspec's own bound on nesting: a hostile body, not a bug
        raise msgspec.DecodeError(TOO_DEEP) from None


def readable_nonce(body: bytes) -> str | None:
    """The request's nonce_str, if it can be read at all from a body otherwise refused."""
    try:
        return _nonce_decoder.decode(body).nonce_str
    except (msgspec.DecodeError, RecursionError):
        return None


def encode_reply(reply: Reply) -> bytes:
    return _reply_encoder.encode(reply)


def _lowercase_keys(obj: dict[str, Any], where: str) -> dict[str, Any]:
    lowered = {key.lower(): value for key, value in obj.items()}
    if len(lowered) != len(obj):
        raise PayloadError(f"a field is given twice in different case - at `{where}`")
    return lowered


class _ExactOrder(Order, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An order exactly as documented: an ``out_order_No`` sends it down the general path."""


class _ExactPayload(msgspec.Struct, forbid_unknown_fields=True):
    """The payload exactly as documented: lowercase names, nothing else, nothing null."""

    openid: str
    bank_type: str
    total_fee: Annotated[int, msgspec.Meta(ge=0)]
    transaction_id: Annotated[str, msgspec.Meta(min_length=1)]
    time_end: str
    repay_no: str
    order_no: tuple[str, ...]
    order: tuple[_ExactOrder, ...] = ()
    out_user_id: str = ""


_exact_decoder = msgspec.json.Decoder(_ExactPayload)


def decode_payment(plaintext: bytes, envelope: Envelope) -> ArrearsPayment:
    """The payment in a decrypted payload; field names are matched case-insensitively.

    The English seed writes ``repay_No`` and ``order_No`` where WeChat sends lowercase,
    so both are read; a name given in two cases is ambiguous and refused.
    """
    # Fast path, for the payload as documented. Anything else (another case, an unknown
    # or null field) fails it and takes the general path, which decides.
    try:
        exact = _exact_decoder.decode(plaintext)
    except (msgspec.DecodeError, RecursionError):
        return _decode_any_case(plaintext, envelope)
    return ArrearsPayment(
        appid=envelope.appid, mch_id=envelope.mch_id, transaction_id=exact.transaction_id,
        total_fee=exact.total_fee, openid=exact.openid, bank_type=exact.bank_type,
        time_end=exact.time_end, repay_no=exact.repay_no, order_no=exact.order_no,
        # Field by field, three times cheaper than Order(**asdict(o)); a test checks that
        # every Order field is copied.
        order=tuple([
            Order(order_no=o.order_no, attach=o.attach, base64_qrcode=o.base64_qrcode,
                  out_order_no=o.out_order_no)
            for o in exact.order
        ]),
        out_user_id=exact.out_user_id, paid_at=parse_time_end(exact.time_end),
    )


def _decode_any_case(plaintext: bytes, envelope: Envelope) -> ArrearsPayment:
    try:
        obj = _any_decoder.decode(plaintext)
    except RecursionError:
        raise PayloadError(TOO_DEEP) from None
    except msgspec.DecodeError as exc:
        raise PayloadError(f"payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise PayloadError(f"payload is a JSON {type(obj).__name__}, not an object")
    fields = _lowercase_keys(obj, "$")
    for optional in ("order", "out_user_id"):
        if optional in fields and fields[optional] is None:
            del fields[optional]
    orders = fields.get("order")
    if isinstance(orders, list):
        fields["order"] = [
            _lowercase_keys(item, f"$.order[{i}]") if isinstance(item, dict) else item
            for i, item in enumerate(orders)
        ]
    time_end = fields.get("time_end")
    fields.update(
        appid=envelope.appid,
        mch_id=envelope.mch_id,
        paid_at=parse_time_end(time_end) if isinstance(time_end, str) else None,
    )
    try:
        return msgspec.convert(fields, ArrearsPayment)
    except msgspec.ValidationError as exc:
        transaction_id = fields.get("transaction_id")
        raise PayloadError(
            str(exc), transaction_id if isinstance(transaction_id, str) else ""
        ) from None
