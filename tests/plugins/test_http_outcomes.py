"""The HTTP outcome rules plugins share, against a real local server."""

from __future__ import annotations

import httpx
import pytest

from arrears_router import PermanentError, RetryableError, raise_for_status, retry_after
from tests.plugins.conftest import Answer, RecordingServer


def answer(server: RecordingServer, status: int, **headers: str) -> httpx.Response:
    server.script(Answer(status=status, body={"detail": "why"}, headers=headers))
    url = server.url.replace("http://", "http://user:secret@") + "/x?token=t0ken"
    return httpx.get(url)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_and_throttling_retry(http_server: RecordingServer, status: int) -> None:
    with pytest.raises(RetryableError, match=f"HTTP {status}"):
        raise_for_status(answer(http_server, status))


@pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
def test_client_errors_are_permanent(http_server: RecordingServer, status: int) -> None:
    with pytest.raises(PermanentError, match=f"HTTP {status}") as caught:
        raise_for_status(answer(http_server, status))
    assert '{"detail": "why"}' in str(caught.value)
    assert "t0ken" not in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(("status", "error"), [(404, RetryableError), (302, RetryableError),
                                               (410, PermanentError)])
def test_retrying_client_errors_but_gone(
    http_server: RecordingServer, status: int, error: type[Exception]
) -> None:
    with pytest.raises(error):
        raise_for_status(answer(http_server, status), retry_4xx=True)


def test_retry_after_in_seconds_or_as_a_date(http_server: RecordingServer) -> None:
    assert retry_after(answer(http_server, 429, **{"Retry-After": "7"})) == 7.0
    past = answer(http_server, 503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after(past) == 0.0
    assert retry_after(answer(http_server, 503)) is None
    with pytest.raises(RetryableError) as caught:
        raise_for_status(answer(http_server, 429, **{"Retry-After": "3"}))
    assert caught.value.retry_after == 3.0


def test_success_raises_nothing(http_server: RecordingServer) -> None:
    raise_for_status(answer(http_server, 204))
