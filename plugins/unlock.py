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

from typing import Annotated, Any, Literal

import httpx
import msgspec

from arrears_router import (
    ArrearsPayment,
    Delivery,
    HttpPlugin,
    PermanentError,
    TemplateError,
    hookimpl,
    raise_for_status,
    render,
    template_fields,
)
from arrears_router.http import (
    body_excerpt,
    check_url_template,
    display_url,
    fill_url,
    json_lookup,
    mask_openid,
)
from arrears_router.templates import check_templates, placeholders, sample_fields

__all__ = ["Unlock"]

DEFAULT_BODY: dict[str, Any] = {
    name: f"{{{name}}}"
    for name in ("openid", "out_user_id", "repay_no", "order_no", "total_fee",
                 "transaction_id", "time_end")
}

StatusCode = Annotated[int, msgspec.Meta(ge=100, le=599)]


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
        """The account system's endpoint, http(s), without ``user:password@`` (credentials go
        in ``headers``); may name payment fields, which are percent-encoded:
        ``"https://accounts.example/riders/{out_user_id}/unblock"``."""
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
            fields = sample_fields()
            check_url_template(self.url, fields, "url")
            check_templates({"headers": self.headers, "body": self.body}, fields)

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.request_timeout)
        self.settings = settings
        self.shown_url = display_url(settings.url)
        # Header values may be secrets: the log names the headers, never their values.
        self._logged_headers = ", ".join(f"{name}=***" for name in
                                         [*settings.headers, settings.idempotency_header])
        # A URL naming no field is the same on every call: parsed once.
        self._url = None if placeholders(settings.url) else httpx.URL(fill_url(settings.url, {}))
        self._own_content_type = any(name.lower() == "content-type" for name in settings.headers)

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        request = self._request(payment, delivery)
        delivery.log.debug(
            "%s %s (delivery %d, attempt %d) headers: %s", request.method, self.shown_url,
            delivery.id, delivery.attempt, self._logged_headers,
        )
        response = await self.send(request, shown_url=self.shown_url)
        self._judge(response)
        delivery.log.info("unlocked transaction %s for openid %s: HTTP %d",
                          payment.transaction_id, mask_openid(payment.openid),
                          response.status_code)
        return f"unlocked: HTTP {response.status_code}"

    def _request(self, payment: ArrearsPayment, delivery: Delivery) -> httpx.Request:
        s = self.settings
        fields = template_fields(payment)
        try:
            url = self._url if self._url is not None else fill_url(s.url, fields)
            headers = {k: str(v) for k, v in render(s.headers, fields).items()}
            body = msgspec.json.encode(render(s.body, fields))
            if not self._own_content_type:  # the operator's own wins, e.g. with a charset
                headers["Content-Type"] = "application/json"
            headers[s.idempotency_header] = delivery.idempotency_key
            return self.build_request(s.method, url, headers=headers, content=body)
        except TemplateError as exc:  # checked at load; kept so a surprise is not retried
            raise PermanentError(f"template: {exc}") from None
        except UnicodeEncodeError:  # HTTP header values are ASCII; a field may not be
            raise PermanentError("headers: a value is not ASCII for this payment") from None

    def _judge(self, response: httpx.Response) -> None:
        """Return if the answer means the rider is unblocked; else raise what it means."""
        status, s = response.status_code, self.settings
        if not (status in s.success_status if s.success_status else 200 <= status < 300):
            # Non-2xx: retryable or permanent, by status. The configured URL is named, not the
            # one sent, whose path may hold an openid the dispatcher would then log.
            raise_for_status(response, shown_url=self.shown_url)
            raise PermanentError(f"HTTP {status} is not a success status "
                                 f"{list(s.success_status)}: {body_excerpt(response)}")
        if s.success_field:
            self._check_field(response)

    def _check_field(self, response: httpx.Response) -> None:
        s = self.settings
        try:
            document = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            raise PermanentError(f"HTTP {response.status_code} but the answer is not JSON, "
                                 f"so {s.success_field} cannot be read: {body_excerpt(response)}"
                                 ) from None
        try:
            value = json_lookup(document, s.success_field)
        except KeyError:
            raise PermanentError(f"HTTP {response.status_code} but the answer has no "
                                 f"{s.success_field}: {body_excerpt(response)}") from None
        if not _same(value, s.success_value):
            raise PermanentError(
                f"HTTP {response.status_code} but {s.success_field} is "
                f"{msgspec.json.encode(value).decode()}, not "
                f"{msgspec.json.encode(s.success_value).decode()}: {body_excerpt(response)}"
            )
