"""webhook: forwards each payment as JSON to an HTTP endpoint, signed per Standard Webhooks.

The body is the Standard Webhooks envelope, minified JSON (msgspec), the same bytes on every
attempt and replay of a payment::

    {"type": "arrears.paid", "timestamp": "2026-11-25T01:30:15Z", "data": {...}}

``data`` is every ``ArrearsPayment`` field under its own name (amounts in fen, ``paid_at`` in
CST); ``timestamp`` is when the event occurred — ``paid_at`` in UTC, null when WeChat's
``time_end`` is not a time. The headers (https://www.standardwebhooks.com):

- ``webhook-id``: the delivery's idempotency key, ``MCH_ID:TRANSACTION_ID:PLUGIN``, the same
  for every attempt and replay, so the receiver dedupes on it;
- ``webhook-timestamp``: unix seconds of this attempt (receivers refuse stale ones);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, once per
  configured secret, space-separated, so a secret can be rotated without a failed delivery.

Outcomes follow the spec's status handling: 2xx done; 410 Gone dead at once (the receiver
wants no more); every other answer — 3xx (redirects are not followed), 4xx, 5xx — and every
timeout or connection failure is retried, after ``Retry-After`` when the answer gives one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import msgspec

from arrears_router import (
    ArrearsPayment,
    Delivery,
    HttpPlugin,
    RetryableError,
    hookimpl,
    raise_for_status,
    retry_after,
)
from arrears_router.http import check_url, display_url

__all__ = ["EVENT_TYPE", "Webhook", "signature_header", "webhook_body"]

EVENT_TYPE = "arrears.paid"
SECRET_PREFIX = "whsec_"  # noqa: S105 -- the format's marker, not a secret
# The spec's bounds for an HMAC-SHA256 secret: at least 24 bytes (192 bits), at most 64.
SECRET_BYTES = range(24, 65)
USER_AGENT = "arrears-router-webhook"
# Set by the plugin alone: a configured value would break the signature or the body's framing.
_RESERVED = frozenset({"content-type", "content-length", "transfer-encoding"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
_HEADER_VALUE = re.compile(r"[^\r\n\x00]*")  # no header injection


class Envelope(msgspec.Struct, frozen=True):
    """The body: Standard Webhooks' recommended ``type``, ``timestamp``, ``data``."""

    type: str
    timestamp: datetime | None
    data: ArrearsPayment


_encoder = msgspec.json.Encoder()


def webhook_body(payment: ArrearsPayment) -> bytes:
    """The JSON body for ``payment``: deterministic, so every attempt sends the same bytes."""
    occurred = payment.paid_at.astimezone(UTC) if payment.paid_at else None
    return _encoder.encode(Envelope(EVENT_TYPE, occurred, payment))


def signature_header(keys: tuple[bytes, ...], msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature``: one ``v1,<base64>`` per key, space-separated."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(key, signed, "sha256")).decode("ascii")
        for key in keys
    )


def secret_key(secret: str, where: str) -> bytes:
    """The HMAC key in a ``whsec_<base64>`` secret. Errors name ``where``, never the secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"{where}: not a Standard Webhooks secret: it must start with whsec_")
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:  # padding optional, as the reference libraries accept it; nothing else lenient
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"{where}: what follows whsec_ is not base64") from None
    if len(key) not in SECRET_BYTES:
        raise ValueError(
            f"{where}: decodes to {len(key)} bytes; a Standard Webhooks secret has "
            f"{SECRET_BYTES.start} to {SECRET_BYTES.stop - 1}"
        )
    return key


def _check_headers(headers: Mapping[str, str]) -> None:
    for name, value in headers.items():
        where = f"headers.{name}"
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{where}: not a valid header name")
        if name.lower() in _RESERVED or name.lower().startswith("webhook-"):
            raise ValueError(f"{where}: set by the plugin itself, it cannot be configured")
        if not _HEADER_VALUE.fullmatch(value):  # the value may be a token: never shown
            raise ValueError(f"{where}: the value has a line break or NUL in it")


class Webhook(HttpPlugin):
    name = "webhook"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        url: str
        """The endpoint, http:// or https://; POSTed to."""
        secrets: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
        """``whsec_...`` secrets; each signs every request (several while rotating)."""
        headers: dict[str, str] = msgspec.field(default_factory=dict)
        """Extra request headers, e.g. ``Authorization``; ``webhook-*`` are the plugin's."""
        request_timeout: Annotated[float, msgspec.Meta(gt=0)] = 8.0
        """Seconds to connect, to send, and to wait for each read of the answer. Below the
        router's ``timeout`` (10 s by default), so a slow endpoint is reported as such."""

        def __post_init__(self) -> None:
            # msgspec turns a ValueError here into a load error naming plugins.NAME.
            check_url(self.url, "url")
            for i, secret in enumerate(self.secrets):
                secret_key(secret, f"secrets[{i}]")
            _check_headers(self.headers)

        # Settings travel inside Delivery and LoadedPlugin: a repr of either must not show a
        # secret or a header value (an Authorization token).
        def __repr__(self) -> str:
            fields = ", ".join(f"{name}={value}" for name, value in self.__rich_repr__())
            return f"Settings({fields})"

        def __rich_repr__(self) -> list[tuple[str, Any]]:
            return [
                ("url", repr(display_url(self.url))),
                ("secrets", f"<{len(self.secrets)} hidden>"),
                ("headers", f"<{', '.join(self.headers) or 'none'}: values hidden>"),
                ("request_timeout", self.request_timeout),
            ]

    def __init__(self, settings: Settings) -> None:
        headers = httpx.Headers({"user-agent": USER_AGENT})
        headers.update(settings.headers)  # case-insensitively: one User-Agent, theirs
        super().__init__(settings.request_timeout, headers)
        self.settings = settings
        self._keys = tuple(
            secret_key(secret, f"secrets[{i}]") for i, secret in enumerate(settings.secrets)
        )
        self._shown_url = display_url(settings.url)
        self._url = httpx.URL(settings.url)  # parsed once: the same on every call

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        body = webhook_body(payment)
        timestamp = int(time.time())  # of this attempt: a retry is signed afresh
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.idempotency_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(
                self._keys, delivery.idempotency_key, timestamp, body
            ),
        }
        response = await self._post(body, headers)
        self._check(response)
        return f"HTTP {response.status_code}"

    async def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        request = self.build_request("POST", self._url, content=body, headers=headers)
        return await self.send(request, shown_url=self._shown_url)

    def _check(self, response: httpx.Response) -> None:
        """2xx passes; 410 is permanent; anything else is retried (core's rules, plus 3xx)."""
        if 300 <= response.status_code < 400:  # core would call it permanent
            raise RetryableError(
                f"HTTP {response.status_code} from {self._shown_url}: redirects are not "
                "followed; set url to where it points", retry_after=retry_after(response),
            )
        # As the spec and Svix do: a 4xx is often a receiver mid-deploy or misconfigured, and
        # fixed within the retry schedule; dead letters wait for a replay if it is not.
        raise_for_status(response, retry_4xx=True)
