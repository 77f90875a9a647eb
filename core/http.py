"""What an HTTP answer means for a delivery: shared by plugins that call out over HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping

import httpx

from arrears_router.errors import PermanentError, RetryableError
from arrears_router.hookspecs import hookimpl

__all__ = ["HttpPlugin", "raise_for_status", "retry_after"]

_BODY_LIMIT = 500


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
    body = response.text[:_BODY_LIMIT]
    # Neither a query (tokens) nor user:password may reach the delivery's record or a log.
    where = shown_url or response.request.url.copy_with(query=None, userinfo=b"")
    message = f"HTTP {status} from {where}: {body}"
    retryable = status == 429 or status >= 500 or (retry_4xx and 300 <= status < 500)
    if retryable and status != 410:
        raise RetryableError(message, retry_after=retry_after(response))
    raise PermanentError(message)


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
            an openid or a phone.
        """
        try:
            async with asyncio.timeout(self.request_timeout):
                return await self.client.send(request)
        except (TimeoutError, httpx.TimeoutException):  # whichever bound ran out first
            raise RetryableError(
                f"no answer from {shown_url} within request_timeout {self.request_timeout:g} s"
            ) from None
        except httpx.TransportError as exc:
            raise RetryableError(
                f"{type(exc).__name__}: cannot reach {shown_url}: {exc}"
            ) from None


def mask_openid(openid: str) -> str:
    """Enough of an openid to tell riders apart in a log, never the whole of it."""
    return openid[:4] + "…" + openid[-4:] if len(openid) > 8 else "…"
