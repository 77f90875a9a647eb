"""What an HTTP answer means for a delivery: shared by plugins that call out over HTTP."""

from __future__ import annotations

import email.utils
import time

import httpx

from core.delivery import PermanentError, RetryableError

__all__ = ["raise_for_status", "retry_after"]

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
