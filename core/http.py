"""The kit for plugins that call out over HTTP: one pooled client (:class:`HttpPlugin`), what an
answer means for a delivery (:func:`raise_for_status`), URLs filled from a payment and checked
at load, and what of a URL, an openid, a phone or an error a log or a delivery's record may show.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from arrears_router.errors import PermanentError, RetryableError
from arrears_router.hookspecs import hookimpl
from arrears_router.templates import TemplateError, placeholders, render

__all__ = [
    "HttpPlugin",
    "body_excerpt",
    "check_url",
    "check_url_template",
    "describe_error",
    "display_url",
    "fill_url",
    "json_lookup",
    "mask_openid",
    "mask_phone",
    "mask_phones_in",
    "raise_for_status",
    "retry_after",
]

_BODY_LIMIT = 500
# A URL inside an error's text, up to what usually ends one in prose or a repr.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


# -- what a log line or a delivery's record may show


def display_url(url: str | httpx.URL) -> str:
    """``url`` as logs and errors may show it: no query or fragment (a token may be there) and
    no ``user:password@``. A template's placeholders stay as written (``/riders/{openid}``), so
    the configured URL can be shown where the one sent holds an openid or a phone.
    """
    base = re.split(r"[?#]", str(url), maxsplit=1)[0]
    scheme, sep, rest = base.partition("://")
    if not sep:
        return base
    authority, slash, path = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{path}"


def mask_openid(openid: str) -> str:
    """``oRider0000000000000000000001`` -> ``oRid****0001``: enough to tell riders apart in a
    log, never the whole of it.
    """
    return f"{openid[:4]}****{openid[-4:]}" if len(openid) > 12 else "****"


def mask_phone(phone: str) -> str:
    """``+8613800000000`` -> ``+86138****0000``: enough to tell numbers apart, not to text one."""
    if len(phone) < 9:
        return "****"
    return f"{phone[:len(phone) - 8]}****{phone[-4:]}"


# A mainland mobile number as people and services write it: 13800000000, 8613800000000,
# +86 138 0000 0000, 138-0000-0000; not a run of digits inside a longer one (an order id).
_MOBILE_IN_TEXT = re.compile(r"(?<![\d+])(?:\+?86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)")


def mask_phones_in(text: str) -> str:
    """Every mainland mobile number in ``text`` masked: for what quotes a far side's answer
    before the rider's number is known (a lookup service's error, say)."""
    return _MOBILE_IN_TEXT.sub(lambda found: mask_phone(re.sub(r"[\s-]", "", found.group())),
                               text)


def describe_error(exc: BaseException, context: str = "") -> str:
    """``exc`` as a delivery's last error tells it: ``Type: context: message``, leaving out
    what is empty; a URL in the message is cut to :func:`display_url`, since some errors quote
    the URL requested, token and all.
    """
    message = _URL_IN_TEXT.sub(lambda found: display_url(found.group()), str(exc))
    return ": ".join(part for part in (type(exc).__name__, context, message) if part)


def body_excerpt(response: httpx.Response) -> str:
    """The start of the answer's body, as much as an error message quotes."""
    return response.text[:_BODY_LIMIT]


# -- URLs, checked at load


def check_url(url: str, where: str) -> None:
    """Refuse what is not an absolute http:// or https:// URL with a host, or holds
    ``user:password@``: every error names the URL, so credentials belong in headers.

    :param where: the setting's key, leading the ValueError's message.
    """
    _check(url, url, where)


def check_url_template(template: str, fields: Mapping[str, Any], where: str) -> None:
    """:func:`check_url` for a URL filled from ``fields`` (a sample's: see
    :func:`arrears_router.templates.sample_fields`); a field it does not know is named.
    """
    try:
        url = _filled(template, fields)
    except TemplateError as exc:
        raise ValueError(f"{where}: {exc}") from None
    _check(url, template, where)


def fill_url(template: str, fields: Mapping[str, Any]) -> str:
    """``template`` filled from ``fields``, each text percent-encoded: a rider id holding a
    ``/`` or a ``?`` cannot change the path or start a query.

    :raises PermanentError: a field the URL names is empty in this payment; nothing must be
        sent, since ``/riders//unblock`` may well reach another endpoint.
    """
    if empty := sorted(name for name in placeholders(template) if fields.get(name) == ""):
        raise PermanentError(f"url: {', '.join(empty)} is empty in this payment")
    return _filled(template, fields)


def _filled(template: str, fields: Mapping[str, Any]) -> str:
    encoded = {name: quote(value, safe="") if isinstance(value, str) else value
               for name, value in fields.items()}
    return str(render(template, encoded))


def _check(url: str, written: str, where: str) -> None:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:  # its message names the part, not the whole URL
        raise ValueError(f"{where}: not a valid URL: {exc}") from None
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise ValueError(
            f"{where}: {display_url(written)!r} is not an http:// or https:// URL with a host"
        )
    if parsed.userinfo:
        raise ValueError(f"{where}: has credentials in it; send them in `headers` instead")


# -- answers


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``: seconds or an HTTP date)."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def raise_for_status(
    response: httpx.Response, *, retry_4xx: bool = False, shown_url: str | None = None
) -> None:
    """Nothing for 2xx. 429, 5xx (and, with ``retry_4xx``, 3xx and other 4xx but 410) raise
    RetryableError, honouring ``Retry-After``; the rest raise PermanentError. Either error
    carries the status and the start of the response body, for the delivery's record.

    :param shown_url: the URL to name instead of the one requested, when that one holds
        something no record may (an openid or a phone in its path): the configured template.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    where = shown_url or display_url(response.request.url)
    message = f"HTTP {status} from {where}: {body_excerpt(response)}"
    retryable = status == 429 or status >= 500 or (retry_4xx and 300 <= status < 500)
    if retryable and status != 410:
        raise RetryableError(message, retry_after=retry_after(response))
    raise PermanentError(message)


def json_lookup(document: Any, path: str) -> Any:
    """The value at a dotted ``path`` in decoded JSON: keys of objects, and numbers for list
    items (``result.items.0.code``).

    :raises KeyError: nothing is there (a JSON null is something: None is returned).
    """
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (isinstance(value, list) and part.isascii() and part.isdigit()
              and int(part) < len(value)):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


# -- the client


class HttpPlugin:
    """A base for plugins that call out over HTTP: one pooled client for the router's run,
    opened and closed by the lifecycle hooks, and :meth:`send`, which turns a timeout or an
    unreachable server into a retry.
    """

    def __init__(self, request_timeout: float, headers: Mapping[str, str] | None = None) -> None:
        self.request_timeout = request_timeout
        self._headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None

    @hookimpl
    async def router_started(self) -> None:
        # Made here rather than in __init__: a client belongs to the router's event loop.
        # Redirects are not followed: a moved endpoint is a config to update, not to guess.
        self._client = httpx.AsyncClient(
            timeout=self.request_timeout, headers=self._headers, follow_redirects=False
        )

    @hookimpl
    async def router_stopping(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RetryableError(f"{type(self).__name__}: not started, no HTTP client yet")
        return self._client

    async def send(self, request: httpx.Request, *, shown_url: str) -> httpx.Response:
        """Send within ``request_timeout`` in all (httpx's own bounds each phase only).

        :param shown_url: how to name the server in an error: never a URL holding a token,
            an openid or a phone (:func:`display_url` of the configured URL).
        """
        try:
            async with asyncio.timeout(self.request_timeout):
                return await self.client.send(request)
        except (TimeoutError, httpx.TimeoutException):  # whichever bound ran out first
            raise RetryableError(
                f"no answer from {shown_url} within request_timeout {self.request_timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(describe_error(exc, f"cannot reach {shown_url}")) from None
