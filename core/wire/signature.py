"""The notification signature: WeChat Pay v2 rules (docs/protocol.md, "Signature").

Every top-level field but ``sign`` is signed, fields WeChat may add later included; empty
strings and nulls are left out (an integer 0 is not empty); names sorted in ASCII order,
``name=value`` joined with ``&``, then ``&key=<sign key>``; MD5 or HMAC-SHA256, upper hex.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from enum import StrEnum

import msgspec

__all__ = [
    "MAX_SIGNED_FIELDS",
    "SignType",
    "SignatureError",
    "Signer",
    "check_sign",
    "sign_type_of",
    "signed_fields",
    "signing_string",
]


class SignType(StrEnum):
    MD5 = "MD5"
    HMAC_SHA256 = "HMAC-SHA256"


# The sign's length tells the algorithm apart, never a field in the request (no downgrade).
_TYPE_BY_LENGTH = {32: SignType.MD5, 64: SignType.HMAC_SHA256}
_MD5 = SignType.MD5  # an enum class attribute is a slow lookup on Python 3.11

_raw_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_string = msgspec.json.Decoder(str)
# A request whose every value is a string or null (the documented one) decodes in one go.
_text_fields = msgspec.json.Decoder(dict[str, str | None])


MAX_SIGNED_FIELDS = 32
"""A notification has six top-level fields; room for those WeChat may add. Every signed field
is sorted and hashed before the sign can be checked, so an unauthenticated request must not
choose how many there are."""


class SignatureError(Exception):
    """The sign is missing, malformed, of a type not accepted, or wrong."""


def signed_fields(body: bytes) -> dict[str, str]:
    """The fields a sign covers, each value as sent: strings decoded, other JSON as its text.

    Raises msgspec.DecodeError when ``body`` is not a JSON object, nests too deeply, or has
    more than :data:`MAX_SIGNED_FIELDS` fields.
    """
    try:
        fields = _text_fields.decode(body)
    except (msgspec.DecodeError, RecursionError):  # a number, bool, array or object: its text
        return _signed_fields_as_sent(body)
    _check_count(fields)
    fields.pop("sign", None)
    if not all(fields.values()):  # drop the empty strings and nulls
        return {name: value for name, value in fields.items() if value}
    return fields  # type: ignore[return-value]  # no None left


def _signed_fields_as_sent(body: bytes) -> dict[str, str]:
    """signed_fields for any JSON object: each value's raw text, strings decoded."""
    try:
        raw_fields = _raw_fields.decode(body)
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply") from None
    _check_count(raw_fields)
    fields: dict[str, str] = {}
    for name, raw in raw_fields.items():
        if name == "sign":
            continue
        text = bytes(raw)
        if text == b"null":
            continue
        value = _string.decode(text) if text[:1] == b'"' else text.decode()
        if value != "":
            fields[name] = value
    return fields


def _check_count(fields: Mapping[str, object]) -> None:
    if len(fields) > MAX_SIGNED_FIELDS + 1:  # and the sign
        raise msgspec.DecodeError(
            f"{len(fields)} fields; a notification has at most {MAX_SIGNED_FIELDS} besides sign")


def signing_string(fields: Mapping[str, str], key: str) -> bytes:
    """``a=1&b=2&key=KEY`` as UTF-8; Python's code-point order is UTF-8 byte order."""
    pairs = "&".join([f"{name}={fields[name]}" for name in sorted(fields)])
    return f"{pairs}&key={key}".encode()


def sign_type_of(sign: str) -> SignType | None:
    """The algorithm a received sign was made with, by its length; None if it is neither."""
    return _TYPE_BY_LENGTH.get(len(sign))


class Signer:
    """Signs and verifies with one merchant sign key; the HMAC key schedule is done once."""

    __slots__ = ("_hmac", "_key")

    def __init__(self, key: str) -> None:
        self._key = key
        self._hmac = hmac.new(key.encode(), digestmod=hashlib.sha256)

    def sign(self, fields: Mapping[str, str], sign_type: SignType) -> str:
        message = signing_string(fields, self._key)
        if sign_type is _MD5:
            return hashlib.md5(message, usedforsecurity=False).hexdigest().upper()
        mac = self._hmac.copy()
        mac.update(message)
        return mac.hexdigest().upper()

    def verify(self, fields: Mapping[str, str], sign: str, sign_type: SignType) -> bool:
        """Constant-time comparison; the received sign may be upper or lower case."""
        expected = self.sign(fields, sign_type).encode()
        return hmac.compare_digest(expected, sign.upper().encode("utf-8", "replace"))


def check_sign(
    sign: str, accepted: Iterable[SignType]
) -> SignType:
    """The sign type of ``sign`` if the merchant accepts it, else a SignatureError saying why."""
    if not sign:
        raise SignatureError("sign is missing")
    sign_type = sign_type_of(sign)
    if sign_type is None:
        raise SignatureError(
            f"sign has {len(sign)} characters; expected 32 (MD5) or 64 (HMAC-SHA256)"
        )
    if sign_type not in accepted:
        raise SignatureError(f"sign type {sign_type} is not accepted for this merchant")
    return sign_type
