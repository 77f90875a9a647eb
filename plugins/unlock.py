"""``unlock``: tells the operator's account system that the rider has paid, so it unblocks them.

One HTTP call per payment, built from templates filled with the payment's fields (URL,
headers, JSON body), with the delivery's idempotency key in a header so that the account
system can dedupe the repeats at-least-once delivery brings. What the answer means:

- a success status (any 2xx, or the listed ``success_status``) and, if configured, the JSON
  ``success_field`` equal to ``success_value`` -> done;
- 5xx, 429, a timeout or a connection error -> retried (``Retry-After`` honoured);
- any other status, or a success status whose JSON says otherwise -> dead at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter
from typing import Annotated, Any, Literal
from urllib.parse import quote

import httpx
import msgspec

from arrears_router import (
    ArrearsPayment,
    Delivery,
    HttpPlugin,
    Order,
    PermanentError,
    RetryableError,
    TemplateError,
    hookimpl,
    raise_for_status,
    render,
    template_fields,
)

__all__ = ["Unlock"]

DEFAULT_BODY: dict[str, Any] = {
    name: f"{{{name}}}"
    for name in ("openid", "out_user_id", "repay_no", "order_no", "total_fee",
                 "transaction_id", "time_end")
}
_BODY_LIMIT = 500

# Every field a template may name exists in every payment with the same type, so a template
# that renders for this sample renders for any payment: templates are checked once, at load.
_SAMPLE = ArrearsPayment(
    appid="wx0000000000000000", mch_id="1900000000", transaction_id="4200000000000000000000000000",
    total_fee=100, openid="o" * 28, bank_type="LQT", time_end="20260101000000", repay_no="R1",
    order_no=("O1",), order=(Order(order_no="O1"),), out_user_id="rider-1",
)

StatusCode = Annotated[int, msgspec.Meta(ge=100, le=599)]


def _check_url(url: str, fields: Mapping[str, Any]) -> None:
    try:
        rendered = httpx.URL(render(url, _url_fields(fields)))
    except TemplateError as exc:
        raise ValueError(f"url: {exc}") from None
    except (httpx.InvalidURL, TypeError) as exc:  # TypeError: "{total_fee}" is not a string
        raise ValueError(f"url: {url!r} is not a valid URL: {exc}") from None
    if rendered.scheme not in {"http", "https"} or not rendered.host:
        raise ValueError(f"url: {url!r} is not an http:// or https:// URL with a host")


def _url_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fields made safe for a URL: a rider id with a ``/`` or ``?`` must not change the path."""
    return {name: quote(v, safe="") if isinstance(v, str) else v for name, v in fields.items()}


def _placeholders(template: str) -> set[str]:
    """The field names a template string uses (``{order[0]}`` uses ``order``)."""
    names = (name for _, name, _, _ in Formatter().parse(template) if name)
    return {name.split(".")[0].split("[")[0] for name in names}


def _without_query(url: str) -> str:
    """The URL as it may be shown: a query may carry a token the config expanded into it."""
    return url.split("#")[0].split("?")[0]


def _mask_openid(openid: str) -> str:
    return f"{openid[:3]}...{openid[-4:]}" if len(openid) > 10 else "***"


def _lookup(document: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` at a dotted path: keys of objects, and numbers for list items."""
    for part in path.split("."):
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return False, None
    return True, document


def _same(found: Any, expected: Any) -> bool:
    # JSON true is not 1 and 1 is not true, although Python says True == 1.
    if isinstance(found, bool) or isinstance(expected, bool):
        return found is expected
    return bool(found == expected)


class Unlock(HttpPlugin):
    """Unblocks the rider in the operator's account system once their arrears are paid."""

    name = "unlock"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        """``[plugins.unlock]``: where and how to call the account system; what success is."""

        url: str
        """The account system's endpoint, http(s); may name payment fields, which are
        percent-encoded: ``"https://accounts.example/riders/{out_user_id}/unblock"``."""
        method: Literal["POST", "PUT", "PATCH"] = "POST"
        """The HTTP method; the request always carries the JSON body."""
        headers: dict[str, str] = {}
        """Extra request headers; values may be templates, and ``"${ENV}"`` keeps a secret out of
        config.toml. Logged only masked."""
        body: dict[str, Any] = msgspec.field(default_factory=lambda: dict(DEFAULT_BODY))
        """The JSON body template; a value that is one whole placeholder keeps the field's type
        (``"{total_fee}"`` is sent as an integer)."""
        idempotency_header: Annotated[str, msgspec.Meta(min_length=1)] = "Idempotency-Key"
        """The header carrying ``delivery.idempotency_key``, the same on every repeat."""
        request_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
        """Seconds the whole call may take before it is retried; keep it below the router's
        ``timeout``, which would otherwise cut the call first."""
        success_status: tuple[StatusCode, ...] = ()
        """Statuses that mean success; empty means any 2xx. E.g. ``[200, 409]`` if the account
        system answers 409 for a rider already unblocked."""
        success_field: str = ""
        """A dotted path into the JSON answer (``"result.code"``; a number indexes a list) that
        must equal ``success_value``; empty means the status alone decides."""
        success_value: str | int | float | bool | None = None
        """What ``success_field`` must hold, type included (``0`` is not ``"0"``)."""

        def __post_init__(self) -> None:
            # A ValueError here is reported by the router as a config error naming the plugin's
            # table, before anything starts: a wrong template must not wait for a payment.
            if bool(self.success_field) != (self.success_value is not None):
                raise ValueError("success_field and success_value go together: set both or neither")
            if self.idempotency_header.lower() in {name.lower() for name in self.headers}:
                raise ValueError(f"headers: {self.idempotency_header} is the idempotency_header")
            fields = template_fields(_SAMPLE)
            _check_url(self.url, fields)
            for key, template in (("headers", self.headers), ("body", self.body)):
                try:
                    render(template, fields)
                except TemplateError as exc:
                    raise ValueError(f"{key}: {exc}") from None

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.request_timeout)
        self.settings = settings
        self.shown_url = _without_query(settings.url)
        self._url_names = _placeholders(settings.url)
        # Header values may be secrets: the log names the headers, never their values.
        self._logged_headers = ", ".join(f"{name}=***" for name in
                                         [*settings.headers, settings.idempotency_header])

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        request = self._request(self.client, payment, delivery)
        delivery.log.debug(
            "%s %s (delivery %d, attempt %d) headers: %s", request.method, self.shown_url,
            delivery.id, delivery.attempt, self._logged_headers,
        )
        response = await self.send(request, shown_url=self.shown_url)
        self._judge(response)
        delivery.log.info("unlocked transaction %s for openid %s: HTTP %d",
                          payment.transaction_id, _mask_openid(payment.openid),
                          response.status_code)
        return f"unlocked: HTTP {response.status_code}"

    def _request(
        self, client: httpx.AsyncClient, payment: ArrearsPayment, delivery: Delivery
    ) -> httpx.Request:
        s = self.settings
        fields = template_fields(payment)
        if empty := sorted(n for n in self._url_names if fields.get(n) == ""):
            # ".../riders//unblock" may well reach another endpoint: never send it.
            raise PermanentError(f"url: {', '.join(empty)} is empty in this payment")
        try:
            url = render(s.url, _url_fields(fields))
            headers = httpx.Headers({k: str(v) for k, v in render(s.headers, fields).items()})
            body = msgspec.json.encode(render(s.body, fields))
        except TemplateError as exc:  # checked at load; kept so a surprise is not retried
            raise PermanentError(f"template: {exc}") from None
        except UnicodeEncodeError:  # HTTP header values are ASCII; a field may not be
            raise PermanentError("headers: a value is not ASCII for this payment") from None
        if "content-type" not in headers:  # the operator's own wins, e.g. with a charset
            headers["Content-Type"] = "application/json"
        headers[s.idempotency_header] = delivery.idempotency_key
        return client.build_request(s.method, url, headers=headers, content=body)

    def _judge(self, response: httpx.Response) -> None:
        """Return if the answer means the rider is unblocked; else raise what it means."""
        status, s = response.status_code, self.settings
        if not (status in s.success_status if s.success_status else 200 <= status < 300):
            self._raise_for_status(response)  # non-2xx: retryable or permanent, by status
            raise PermanentError(f"HTTP {status} is not a success status "
                                 f"{list(s.success_status)}: {self._body(response)}")
        if s.success_field:
            self._check_field(response)

    def _raise_for_status(self, response: httpx.Response) -> None:
        # core's message names the URL sent, whose path may hold an openid the dispatcher
        # would then log: show the configured URL instead.
        sent = str(response.request.url.copy_with(query=None))
        try:
            raise_for_status(response)
        except RetryableError as exc:
            raise RetryableError(str(exc).replace(sent, self.shown_url, 1),
                                 retry_after=exc.retry_after) from None
        except PermanentError as exc:
            raise PermanentError(str(exc).replace(sent, self.shown_url, 1)) from None

    def _check_field(self, response: httpx.Response) -> None:
        s = self.settings
        try:
            document = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            raise PermanentError(f"HTTP {response.status_code} but the answer is not JSON, "
                                 f"so {s.success_field} cannot be read: {self._body(response)}"
                                 ) from None
        found, value = _lookup(document, s.success_field)
        if not found:
            raise PermanentError(f"HTTP {response.status_code} but the answer has no "
                                 f"{s.success_field}: {self._body(response)}")
        if not _same(value, s.success_value):
            raise PermanentError(
                f"HTTP {response.status_code} but {s.success_field} is "
                f"{msgspec.json.encode(value).decode()}, not "
                f"{msgspec.json.encode(s.success_value).decode()}: {self._body(response)}"
            )

    @staticmethod
    def _body(response: httpx.Response) -> str:
        return response.text[:_BODY_LIMIT]
