"""The kit for plugins that call out over HTTP: one pooled client (:class:`HttpPlugin`), what an
answer means for a delivery (:func:`raise_for_status`), URLs filled from a payment and checked
at load, and what of a URL, an openid, a phone or an error a log or a delivery's record may show.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import io
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
import yarl

from arrears_router.errors import PermanentError, RetryableError
from arrears_router.hookspecs import hookimpl
from arrears_router.templates import TemplateError, placeholders, render

__all__ = [
    "HttpPlugin",
    "PooledTransport",
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
    encoded = dict(fields)
    for name in placeholders(template) & encoded.keys():  # only what the URL holds
        if isinstance(value := encoded[name], str):
            encoded[name] = quote(value, safe="")
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

    The client is an ``httpx.AsyncClient`` (its requests and responses are what a plugin
    handles), but its connections are aiohttp's: httpx's own pool costs several times the CPU
    per call and grows with its size (docs/decisions/http-client.md).
    """

    def __init__(self, request_timeout: float, headers: Mapping[str, str] | None = None) -> None:
        self.request_timeout = request_timeout
        self._headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None
        self._transport: PooledTransport | None = None
        self._client_headers: list[tuple[str, str]] = []
        self._timeouts: dict[str, float | None] = {}

    @hookimpl
    async def router_started(self) -> None:
        # Made here rather than in __init__: a pool belongs to the router's event loop.
        # Redirects are not followed: a moved endpoint is a config to update, not to guess.
        self._transport = PooledTransport()
        self._client = httpx.AsyncClient(
            timeout=self.request_timeout, headers=self._headers, follow_redirects=False,
            transport=self._transport,
        )
        # What build_request adds to every request, taken once rather than merged per call.
        encoding = self._client.headers.encoding
        self._client_headers = [(name.decode(encoding), value.decode(encoding))
                                for name, value in self._client.headers.raw]
        self._timeouts = self._client.timeout.as_dict()

    @hookimpl
    async def router_stopping(self) -> None:
        client, self._client, self._transport = self._client, None, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise self._not_started()
        return self._client

    def _not_started(self) -> RetryableError:
        return RetryableError(f"{type(self).__name__}: not started, no HTTP client yet")

    def build_request(self, method: str, url: httpx.URL | str, *,
                      headers: Mapping[str, str] | None = None,
                      content: bytes | None = None) -> httpx.Request:
        """The request ``client.build_request`` makes, for less CPU (a third of it given a URL
        parsed once): the client's headers as they were when the router started (one in
        ``headers`` replaces the client's of that name: a header that changes, a refreshed
        token, goes there), its timeouts, and the body; no cookie, query parameter or base
        URL, which :meth:`send` never uses.

        :param url: an ``httpx.URL`` parsed once, for a plugin whose URL is the same on every
            call: parsing it again costs a call 20 to 40 microseconds.
        """
        if self._client is None:
            raise self._not_started()
        merged = self._client_headers
        if headers:
            replaced = {name.lower() for name in headers}
            merged = [item for item in merged if item[0].lower() not in replaced]
            merged += headers.items()
        # A dict of its own: a plugin may add to a request's extensions (sms adds `trace`).
        return httpx.Request(method, url, headers=merged, content=content,
                             extensions={"timeout": dict(self._timeouts)})

    async def send(self, request: httpx.Request, *, shown_url: str) -> httpx.Response:
        """Send within ``request_timeout`` in all (httpx's own bounds each phase only), and
        read the answer. The request goes straight to the pool: what it carries (the client's
        headers merged in by :meth:`build_request` or ``client.build_request``) is all that is
        sent; no cookie is kept from one call to the next.

        :param shown_url: how to name the server in an error: never a URL holding a token,
            an openid or a phone (:func:`display_url` of the configured URL).
        """
        transport = self._transport
        if transport is None:
            raise self._not_started()
        try:
            async with asyncio.timeout(self.request_timeout):
                response = await transport.handle_async_request(request)
                try:
                    await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
        except (TimeoutError, httpx.TimeoutException):  # whichever bound ran out first
            raise RetryableError(
                f"no answer from {shown_url} within request_timeout {self.request_timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(describe_error(exc, f"cannot reach {shown_url}")) from None
        return response


# -- the pool under the client


class PooledTransport(httpx.AsyncBaseTransport):
    """httpx's requests sent over an aiohttp connection pool: HTTP/1.1 keep-alive, idle
    connections closed after ``keepalive`` seconds, and at most ``max_connections`` open.
    A plugin's calls in flight are bounded by its ``concurrency``, so its pool is too; the
    limit only stops a plugin that fans out within one call from opening without end.

    httpx's per-phase timeouts (``request.extensions["timeout"]``) apply; its errors are
    httpx's, their messages cut by :func:`display_url`. ``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``ALL_PROXY`` and ``NO_PROXY`` are honoured, as httpx does. A ``trace`` extension is told
    ``http11.send_request_body.complete`` once the body has wholly left.
    """

    def __init__(self, *, max_connections: int = 100, keepalive: float = 5.0) -> None:
        self._limit = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_for: dict[tuple[str, str], tuple[str | None, aiohttp.BasicAuth | None]] = {}
        self._last_url: tuple[httpx.URL, yarl.URL] | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Opened at the first request, inside the event loop it then belongs to.
        connector = aiohttp.TCPConnector(
            limit=self._limit, limit_per_host=0, keepalive_timeout=self._keepalive,
            ssl=httpx.create_ssl_context(),  # the CAs httpx trusts (certifi, SSL_CERT_FILE)
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=None),
            # httpx decodes, keeps cookies (when it sends) and sets the headers it wants:
            # aiohttp adds none of its own.
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        proxy, proxy_auth = self._proxy(request.url)
        with _httpx_errors(request):
            answer = await session.request(
                request.method, self._yarl_url(request.url),
                headers=[(k.decode("latin-1"), v.decode("latin-1"))
                         for k, v in request.headers.raw if k.lower() != b"transfer-encoding"],
                data=_body(request), allow_redirects=False, timeout=self._timeout(request),
                proxy=proxy, proxy_auth=proxy_auth,
            )
        extensions = {"http_version": b"HTTP/1.1",
                      "reason_phrase": (answer.reason or "").encode("latin-1")}
        if answer.content.is_eof():  # the whole body came with the head: the common case
            body = await answer.read()
            answer.release()
            return httpx.Response(answer.status, headers=answer.raw_headers, content=body,
                                  request=request, extensions=extensions)
        return httpx.Response(answer.status, headers=answer.raw_headers, request=request,
                              stream=_Answer(answer, request), extensions=extensions)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _yarl_url(self, url: httpx.URL) -> yarl.URL:
        # A plugin with one URL parses it once and sends that object every time: converted
        # once too. The last one is kept, so its identity cannot pass to another URL.
        if self._last_url is None or self._last_url[0] is not url:
            # Sent as httpx encoded it: yarl would otherwise decode %3D and the like.
            self._last_url = (url, yarl.URL(str(url), encoded=True))
        return self._last_url[1]

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        phases = request.extensions.get("timeout", {})
        key = (phases.get("pool"), phases.get("connect"), phases.get("read"))
        if (timeout := self._timeouts.get(key)) is None:
            # aiohttp's `connect` counts the wait for a free connection as well.
            timeout = self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2])
        return timeout

    def _proxy(self, url: httpx.URL) -> tuple[str | None, aiohttp.BasicAuth | None]:
        if not self._proxies:
            return None, None
        origin = (url.scheme, url.host)
        if (found := self._proxy_for.get(origin)) is None:
            proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
            if proxy and urllib.request.proxy_bypass(url.host):  # NO_PROXY
                proxy = None
            found = (None, None)
            if proxy:
                parsed = yarl.URL(proxy if "://" in proxy else f"http://{proxy}")
                found = (str(parsed.with_user(None)), aiohttp.BasicAuth.from_url(parsed))
            self._proxy_for[origin] = found
        return found


class _Answer(httpx.AsyncByteStream):
    """A body still arriving, read as the caller asks for it."""

    def __init__(self, answer: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._answer = answer
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._answer.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        self._answer.release()  # a body not read to its end closes the connection


_LARGE_BODY = 1 << 20  # aiohttp warns at bytes this large: it sends them from a buffer


def _body(request: httpx.Request) -> Any:
    """What aiohttp sends: the bytes, told to ``trace`` once gone when that is asked for;
    a body httpx streams, streamed (aiohttp frames it, so httpx's Transfer-Encoding is not
    passed on).
    """
    try:
        content = request.content
    except httpx.RequestNotRead:
        return request.stream
    trace = request.extensions.get("trace")
    if trace is not None:
        return _TracedBody(content, trace, request)
    if len(content) > _LARGE_BODY:
        return io.BytesIO(content)
    return content or None


class _TracedBody(aiohttp.BytesPayload):
    def __init__(self, content: bytes, trace: Any, request: httpx.Request) -> None:
        super().__init__(content, content_type=None)
        self._trace = trace
        self._request = request

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        await super().write_with_length(writer, content_length)
        await self._trace("http11.send_request_body.complete", {"request": self._request})


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientError as exc:
        message = _URL_IN_TEXT.sub(lambda found: display_url(found.group()), str(exc))
        raise _httpx_error(exc)(message, request=request) from exc


def _httpx_error(exc: aiohttp.ClientError) -> type[httpx.TransportError]:
    """The httpx error a caller of httpx would see for what aiohttp raised."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return httpx.ProxyError
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS
        return httpx.ConnectError
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError
                  | aiohttp.ClientResponseError):  # closed early, or not HTTP
        return httpx.RemoteProtocolError
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol
    if isinstance(exc, aiohttp.ClientConnectionError):  # reset mid-exchange
        return httpx.ReadError
    return httpx.TransportError
