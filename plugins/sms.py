"""sms: texts the rider a receipt for the arrears just paid.

The rider's phone comes from a static table in config and/or an HTTP lookup, by out_user_id
or openid; the text is a template filled from the payment; a provider adapter sends it: a
generic HTTP provider, or Tencent Cloud SMS (SendSms, API 2021-01-11). A plugin imports only
``arrears_router``'s public API, httpx, msgspec and the stdlib, and Tencent's SDK is no
runtime dependency, so its TC3-HMAC-SHA256 signature is computed here and the call made with
the plugin's async httpx client; the tests check that signature with the SDK's own signer.

A token bucket keeps this process's sends under ``rate_limit``. A phone number, an openid or
a secret key never reaches a log line, a note or an error: phones are masked
(``+86138****0000``) and every error message is scrubbed before it leaves the plugin, since
the router both logs it and stores it with the delivery.

Each text is sent through ``delivery.once``: recorded in the store as begun before it goes,
and as done once the provider accepts it, so a replay or a redelivery never texts the rider
again; and where a text may have gone out unseen (no answer came, a crash), the provider's
``at_most_once`` decides between not sending again (flagged for a person) and sending again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

import httpx
import msgspec

from arrears_router import (
    ArrearsPayment,
    Delivery,
    HttpPlugin,
    PermanentError,
    RetryableError,
    TemplateError,
    hookimpl,
    raise_for_status,
    render,
    template_fields,
)
from arrears_router.http import (
    body_excerpt,
    check_url,
    check_url_template,
    describe_error,
    display_url,
    fill_url,
    json_lookup,
    mask_openid,
    mask_phone,
    mask_phones_in,
)
from arrears_router.templates import check_templates, placeholders, sample_fields

__all__ = [
    "DEFAULT_MESSAGE", "SKIPPED", "Sms", "SmsSettings", "TokenBucket", "tc3_authorization",
]

# Full-width punctuation, as Chinese text is written.
DEFAULT_MESSAGE = "您已成功支付乘车欠款{yuan}元（欠费单{repay_no}），账户已恢复乘车。"  # noqa: RUF001
SKIPPED = "skipped: no phone"

TENCENT_SERVICE = "sms"
TENCENT_VERSION = "2021-01-11"
# The SDK sends exactly this content type with a JSON body; it is part of what is signed.
TENCENT_CONTENT_TYPE = "application/json"

RiderField = Literal["out_user_id", "openid"]


# -- settings


class Lookup(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An HTTP service that knows riders' phones: GET ``url``, read ``field`` of its JSON."""

    url: Annotated[str, msgspec.Meta(min_length=1)]
    """A template: the payment's fields and ``{rider_id}``, each percent-encoded."""
    field: Annotated[str, msgspec.Meta(min_length=1)] = "phone"
    """Where the phone is in the answer; dots go into nested objects (``data.mobile``), and
    a number indexes a list (``phones.0``)."""
    headers: dict[str, str] = {}


class HttpProvider(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                   tag_field="type", tag="http"):
    """Any SMS gateway that takes one HTTP request per message."""

    url: Annotated[str, msgspec.Meta(min_length=1)]
    method: Literal["POST", "PUT", "PATCH", "GET"] = "POST"
    headers: dict[str, str] = {}
    body: Any = msgspec.field(default_factory=lambda: {"phone": "{phone}", "message": "{message}"})
    """A JSON template (not sent with GET); ``{phone}`` and ``{message}`` among its fields."""
    idempotency_header: Annotated[str, msgspec.Meta(min_length=1)] = "Idempotency-Key"
    at_most_once: bool = False
    """When a text may have gone out unseen (no answer came, a crash): false sends it again,
    the provider deduping on ``idempotency_header``; true does not, and flags the payment."""


class TencentProvider(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                      tag_field="type", tag="tencent"):
    """Tencent Cloud SMS, SendSms 2021-01-11. The text is Tencent's approved template
    ``template_id`` filled with ``template_param_set``; ``message`` is not sent.
    """

    secret_id: Annotated[str, msgspec.Meta(min_length=1)]
    secret_key: Annotated[str, msgspec.Meta(min_length=1)]
    sdk_app_id: Annotated[str, msgspec.Meta(min_length=1)]
    sign_name: str = ""
    """The approved signature (签名); required by Tencent for mainland numbers."""
    template_id: Annotated[str, msgspec.Meta(min_length=1)]
    template_param_set: tuple[str, ...] = ("{yuan}", "{repay_no}")
    region: Annotated[str, msgspec.Meta(min_length=1)] = "ap-guangzhou"
    endpoint: Annotated[str, msgspec.Meta(min_length=1)] = "https://sms.tencentcloudapi.com"
    at_most_once: bool = True
    """When a text may have gone out unseen (no answer came, a crash): true does not send it
    again, and flags the payment for a person, since SendSms cannot dedupe a second one; false
    sends it again (a rider may get two)."""


class SmsSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``[plugins.sms]``: the router's keys (mode, timeout, ...) aside, these.

    A text is never sent again once the provider accepted it (a replay, a redelivery). One
    that may have gone out unseen (sent, and no answer within ``request_timeout``; a crash
    mid-send) is sent again or not by the provider's ``at_most_once``: Tencent's defaults
    to true (not again: the payment is flagged for a person), the generic provider's to false
    (again, with the same idempotency header). A text that surely did not go out (no
    connection, or the provider refused it) is always retried.
    """

    provider: HttpProvider | TencentProvider
    lookup_by: Annotated[tuple[RiderField, ...], msgspec.Meta(min_length=1)] = (
        "out_user_id", "openid",
    )
    """The payment's fields naming the rider, tried in order: the first not empty is used."""
    phones: dict[str, str] = {}
    """Rider id -> phone; consulted before ``lookup``."""
    lookup: Lookup | None = None
    message: str = DEFAULT_MESSAGE
    rate_limit: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Messages per second, per process."""
    burst: Annotated[int, msgspec.Meta(ge=1)] = 1
    request_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0

    def __post_init__(self) -> None:
        if not self.phones and self.lookup is None:
            raise ValueError("set `phones`, `lookup`, or both: without them no rider has a phone")
        _check_templates(self)


def _check_templates(settings: SmsSettings) -> None:
    """A misspelt placeholder or a URL that is not one stops start-up with the key named,
    rather than killing every delivery later.
    """
    fields = {**sample_fields(), "rider_id": "rider-1", "phone": "+8613800000000",
              "message": "text", "idempotency_key": "1900000000:4200000000:sms"}
    templates: dict[str, Any] = {"message": settings.message}
    if settings.lookup is not None:
        check_url_template(settings.lookup.url, fields, "lookup.url")
    provider = settings.provider
    if isinstance(provider, HttpProvider):
        check_url_template(provider.url, fields, "provider.url")
        templates["provider.body"] = provider.body
    else:
        check_url(provider.endpoint, "provider.endpoint")
        templates["provider.template_param_set"] = list(provider.template_param_set)
    check_templates(templates, fields)


# -- keeping phones, openids and keys out of logs, notes and errors


class _Redactor:
    """Replaces, in any text, each form the rider's phone may take (providers echo numbers
    with or without ``+`` or ``86``), the openid and the provider's secret key.
    """

    def __init__(self, openid: str, secrets: Sequence[str]) -> None:
        self._masks: dict[str, str] = {}
        self._add(openid, mask_openid(openid))
        for secret in secrets:
            self._add(secret, "****")

    def _add(self, value: str, masked: str) -> None:
        if value:
            self._masks[value] = masked

    def add_phone(self, phone: str) -> None:
        digits = phone.removeprefix("+")
        forms = [phone, digits, f"%2B{digits}"]
        if digits.startswith("86") and len(digits) == 13:
            forms.append(digits[2:])  # the national number inside +86...
        for form in forms:
            self._add(form, mask_phone(form))

    def __call__(self, text: str) -> str:
        # Longest first: +8613800000000 is masked whole, not as + and a masked 86138....
        for value in sorted(self._masks, key=len, reverse=True):
            text = text.replace(value, self._masks[value])
        # A number not known yet (a lookup's error quoting the one it found), or another's.
        return mask_phones_in(text)


@contextlib.contextmanager
def _failures(stage: str, redact: _Redactor) -> Iterator[None]:
    """Turn any failure of ``stage`` into the error the dispatcher should act on, scrubbed:
    the router logs that message and keeps it as the delivery's last error.
    """
    try:
        yield
    except Exception as exc:
        # Its frames say where it failed; `from None` keeps its text, which may quote the
        # phone, out of the traceback the router logs and keeps.
        raise _scrubbed(stage, exc, redact).with_traceback(exc.__traceback__) from None


def _scrubbed(stage: str, exc: Exception, redact: _Redactor) -> Exception:
    if isinstance(exc, RetryableError):  # timeouts and unreachable servers (HttpPlugin.send)
        return RetryableError(redact(f"{stage}: {exc}"), retry_after=exc.retry_after)
    if isinstance(exc, PermanentError):
        return PermanentError(redact(f"{stage}: {exc}"))
    # A bad template or URL is the config's fault: retrying the same one cannot help.
    if isinstance(exc, TemplateError | httpx.InvalidURL):
        return PermanentError(redact(f"{stage}: {describe_error(exc)}"))
    return RetryableError(redact(f"{stage}: {describe_error(exc)}"))  # a surprise: try again


# -- rate


class TokenBucket:
    """``rate`` tokens a second, holding at most ``burst``, shared by one plugin instance's
    concurrent deliveries. A delivery waits for its token rather than failing: a burst of
    payments is spread out instead of being refused by the provider's own limit.
    """

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = time.monotonic()

    async def take(self) -> None:
        wait = self._reserve()
        if wait <= 0:
            return
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            self._tokens += 1  # a delivery timed out waiting: its turn goes to the next one
            raise

    def _reserve(self) -> float:
        """Take a token now, owing it if none is left; seconds until it is paid for. The
        debt makes the waiters' turns follow one another in arrival order, each ``1/rate``
        after the last, with no lock and no polling.
        """
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1
        return -self._tokens / self.rate if self._tokens < 0 else 0.0


# -- finding the phone


def _rider_id(payment: ArrearsPayment, lookup_by: Sequence[RiderField]) -> str:
    for name in lookup_by:
        if value := getattr(payment, name):
            return str(value)
    return ""


def _phone_in(answer: Any, path: str) -> str | None:
    try:
        value = json_lookup(answer, path)
    except KeyError:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a number stored as one: 13800000000
    return _normalized(value) if isinstance(value, str) else None


def _normalized(phone: str) -> str | None:
    """Without the spaces and dashes people write numbers with: providers want digits, and
    the scrubber must recognise the number as the provider echoes it.
    """
    return re.sub(r"[\s\-]", "", phone) or None


def _phone_from(response: httpx.Response, lookup: Lookup) -> str | None:
    """The phone in the lookup service's answer; None when it knows none (404, no or empty
    field).
    """
    if response.status_code == 404:
        return None
    raise_for_status(response, shown_url=display_url(lookup.url))
    try:
        answer = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        raise PermanentError(
            f"HTTP {response.status_code} but not JSON: {body_excerpt(response)}"
        ) from None
    return _phone_in(answer, lookup.field)


# -- providers


@dataclass(frozen=True, slots=True)
class Text:
    """One receipt to send."""

    phone: str
    message: str
    idempotency_key: str
    fields: Mapping[str, Any]
    """For the provider's templates: the payment's, ``rider_id``, ``phone``, ``message``,
    ``idempotency_key``.
    """


class Sender(Protocol):
    """A provider's adapter: the request that sends a text, and what the answer means."""

    kind: str
    secrets: tuple[str, ...]
    shown_url: str
    """Where it sends, as an error may name it."""
    at_most_once: bool

    def request(self, http: HttpPlugin, text: Text) -> httpx.Request:
        """The request sending ``text``, built afresh for each attempt with ``http``'s
        client."""
        ...

    def outcome(self, response: httpx.Response) -> str:
        """A short reference for the note; raises as the dispatcher should act: an
        :class:`_Unclear` error when the answer does not say whether the text went out."""
        ...


class HttpSender:
    kind = "http"

    def __init__(self, config: HttpProvider) -> None:
        self.config = config
        self.secrets: tuple[str, ...] = ()
        self.shown_url = display_url(config.url)  # a GET's query holds the phone
        self.at_most_once = config.at_most_once
        # A URL naming no field is the same on every call: parsed once.
        self._url = None if placeholders(config.url) else httpx.URL(fill_url(config.url, {}))
        self._own_content_type = any(name.lower() == "content-type" for name in config.headers)

    def request(self, http: HttpPlugin, text: Text) -> httpx.Request:
        config = self.config
        # The provider dedupes on this key: a redelivery after a crash must not text twice.
        headers = {**config.headers, config.idempotency_header: text.idempotency_key}
        content = None
        if config.method != "GET":
            content = msgspec.json.encode(render(config.body, text.fields))
            if not self._own_content_type:
                headers["Content-Type"] = "application/json"
        url = self._url if self._url is not None else fill_url(config.url, text.fields)
        return http.build_request(config.method, url, content=content, headers=headers)

    def outcome(self, response: httpx.Response) -> str:
        raise_for_status(response, shown_url=self.shown_url)
        return f"HTTP {response.status_code}"


class TencentSender:
    kind = "tencent"

    def __init__(self, config: TencentProvider) -> None:
        self.config = config
        self.secrets: tuple[str, ...] = (config.secret_key,)
        self.shown_url = display_url(config.endpoint)
        self.at_most_once = config.at_most_once

    def request(self, http: HttpPlugin, text: Text) -> httpx.Request:
        request = http.client.build_request(
            "POST", self.config.endpoint, content=msgspec.json.encode(self._params(text)),
            headers={"Content-Type": TENCENT_CONTENT_TYPE, "X-TC-Action": "SendSms",
                     "X-TC-Version": TENCENT_VERSION, "X-TC-Region": self.config.region},
        )
        timestamp = int(time.time())  # a fresh one per attempt: Tencent refuses stale ones
        request.headers["X-TC-Timestamp"] = str(timestamp)
        request.headers["Authorization"] = tc3_authorization(
            request, secret_id=self.config.secret_id, secret_key=self.config.secret_key,
            service=TENCENT_SERVICE, timestamp=timestamp,
        )
        return request

    def outcome(self, response: httpx.Response) -> str:
        raise_for_status(response, shown_url=self.shown_url)
        return _tencent_outcome(response)

    def _params(self, text: Text) -> dict[str, Any]:
        config = self.config
        params: dict[str, Any] = {
            "PhoneNumberSet": [text.phone],
            "SmsSdkAppId": config.sdk_app_id,
            "TemplateId": config.template_id,
            "TemplateParamSet": [str(render(p, text.fields)) for p in config.template_param_set],
            # Tencent echoes it in the answer and in delivery receipts: duplicates reconcile.
            "SessionContext": text.idempotency_key,
        }
        if config.sign_name:
            params["SignName"] = config.sign_name
        return params


def tc3_authorization(request: httpx.Request, *, secret_id: str, secret_key: str, service: str,
                      timestamp: int) -> str:
    """The ``Authorization`` header of Tencent Cloud API 3.0 (TC3-HMAC-SHA256), signing the
    content type, the host and the body, as Tencent's SDK does.
    """
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    headers = (f"content-type:{request.headers['content-type'].lower()}\n"
               f"host:{request.headers['host'].lower()}\n")
    canonical = "\n".join([
        request.method, request.url.path, request.url.query.decode(), headers,
        "content-type;host", hashlib.sha256(request.content).hexdigest(),
    ])
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join([
        "TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical.encode()).hexdigest(),
    ])
    key = ("TC3" + secret_key).encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
            f"SignedHeaders=content-type;host, Signature={signature}")


class _TencentError(msgspec.Struct, rename="pascal"):
    code: str
    message: str = ""


class _SendStatus(msgspec.Struct, rename="pascal"):
    code: str
    message: str = ""
    serial_no: str = ""


class _TencentResponse(msgspec.Struct, rename="pascal"):
    error: _TencentError | None = None
    send_status_set: list[_SendStatus] = []
    request_id: str = ""


class _TencentAnswer(msgspec.Struct, rename="pascal"):
    response: _TencentResponse


# Tencent answers HTTP 200 even when it refuses; its error code says whether waiting helps.
# These pass with time: its own faults, throttling, a clock that was off (each attempt
# signs with a new timestamp). The value is how long to wait, None for the usual backoff.
_TRANSIENT: dict[str, float | None] = {
    "InternalError": None,
    "RequestLimitExceeded": None,
    "LimitExceeded.DeliveryFrequencyLimit": None,
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,
    "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,
    "AuthFailure.SignatureExpire": None,
}


def _tencent_error(code: str, message: str, request_id: str) -> Exception:
    """Everything else — credentials, parameters, an unapproved sign or template, a number
    on the blocklist, an exhausted package, a daily limit (a receipt a day late is no
    receipt), an unknown code — is permanent: dead at once, for a person to fix and replay.
    """
    text = f"{code}: {message} (RequestId {request_id})"
    family = code.partition(".")[0]
    for name in (code, family):
        if name in _TRANSIENT:
            return RetryableError(text, retry_after=_TRANSIENT[name])
    return PermanentError(text)


class _Unclear(PermanentError):
    """An answer that does not say whether the text went out: a person checks rather than
    risk a second one."""


def _tencent_outcome(response: httpx.Response) -> str:
    try:
        answer = msgspec.json.decode(response.content, type=_TencentAnswer).response
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _Unclear(f"unexpected answer ({exc}): {body_excerpt(response)}") from None
    if answer.error is not None:
        raise _tencent_error(answer.error.code, answer.error.message, answer.request_id)
    if not answer.send_status_set:
        raise _Unclear(f"no SendStatusSet in the answer (RequestId {answer.request_id})")
    status = answer.send_status_set[0]
    if status.code.lower() != "ok":
        raise _tencent_error(status.code, status.message, answer.request_id)
    return f"SerialNo {status.serial_no}"


def _sender(provider: HttpProvider | TencentProvider) -> Sender:
    if isinstance(provider, HttpProvider):
        return HttpSender(provider)
    return TencentSender(provider)


class _Departure:
    """Whether a request wholly left: its httpx ``trace`` is told the body was sent (by the
    kit's transport, as by httpx's own). A provider cannot have acted on one that did not."""

    def __init__(self) -> None:
        self.left = False

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith(".send_request_body.complete"):
            self.left = True


# -- the plugin


class Sms(HttpPlugin):
    """Texts the rider a receipt: phone lookup, message template, provider, rate limit."""

    name = "sms"
    Settings = SmsSettings

    def __init__(self, settings: SmsSettings) -> None:
        super().__init__(settings.request_timeout)
        self.settings = settings
        self.sender = _sender(settings.provider)
        self.bucket = TokenBucket(settings.rate_limit, settings.burst)

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        redact = _Redactor(payment.openid, self.sender.secrets)
        rider_id = _rider_id(payment, self.settings.lookup_by)
        fields = {**template_fields(payment), "rider_id": rider_id}
        with _failures("phone lookup", redact):
            phone = await self._phone(rider_id, fields)
        if phone is None:
            delivery.log.info("delivery %d: no phone for the rider; nothing sent", delivery.id)
            return SKIPPED
        redact.add_phone(phone)
        with _failures("message", redact):
            text = self._text(phone, fields, delivery.idempotency_key)
        await self.bucket.take()  # before the text begins: a wait cut short sent nothing
        async with delivery.once(at_most_once=self.sender.at_most_once) as effect:
            if not effect.act:
                return effect.note
            with _failures(f"provider {self.sender.kind}", redact):
                reference = await self._send(text, effect.nothing_done)
        note = f"sent to {mask_phone(phone)} via {self.sender.kind}: {reference}"
        delivery.log.info("delivery %d: %s", delivery.id, note)
        return note

    async def _send(self, text: Text, nothing_done: Callable[[], None]) -> str:
        """Send ``text``: the provider's reference. Failing, it calls ``nothing_done`` when
        the text surely did not go out: the request never wholly left (no connection), or
        the provider answered with a refusal. Else (it left, and no clear answer came)
        whether it went out is unknown.
        """
        departure = _Departure()
        try:
            request = self.sender.request(self, text)
            request.extensions["trace"] = departure.trace
            response = await self.send(request, shown_url=self.sender.shown_url)
        except Exception:
            if not departure.left:
                nothing_done()
            raise
        try:
            return self.sender.outcome(response)
        except _Unclear:
            raise
        except Exception:
            nothing_done()
            raise

    def _text(self, phone: str, fields: Mapping[str, Any], idempotency_key: str) -> Text:
        message = str(render(self.settings.message, fields))
        return Text(phone, message, idempotency_key, {
            **fields, "phone": phone, "message": message, "idempotency_key": idempotency_key,
        })

    async def _phone(self, rider_id: str, fields: Mapping[str, Any]) -> str | None:
        """The static table first (its entries win: staff and test riders), then the lookup."""
        if not rider_id:
            return None
        if phone := _normalized(self.settings.phones.get(rider_id, "")):
            return phone
        lookup = self.settings.lookup
        if lookup is None:
            return None
        request = self.client.build_request("GET", fill_url(lookup.url, fields),
                                            headers=lookup.headers)
        response = await self.send(request, shown_url=display_url(lookup.url))
        return _phone_from(response, lookup)
