"""Concurrent duplicates, as WeChat's retries can arrive: all acknowledged, one event stored."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import msgspec

from arrears_router.wire.notifier import sample_payload

from .conftest import Router

COPIES = 100


def _fire_together(url: str, bodies: list[bytes]) -> list[tuple[int, dict[str, Any]]]:
    """Open one connection per body, then send them all at once (a barrier releases them)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connections = [http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                   for _ in bodies]
    for connection in connections:
        connection.connect()
    barrier = threading.Barrier(len(bodies), timeout=60)  # a bound, never reached

    def send(connection: http.client.HTTPConnection, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            barrier.wait()
            connection.request("POST", parts.path, body=body,
                               headers={"content-type": "application/json"})
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, connections, bodies))


def _stored(router: Router, transaction_id: str) -> list[dict[str, Any]]:
    events = router.event(transaction_id)
    assert router.quarantined() == []  # duplicates are not conflicts
    return events


def test_100_concurrent_identical_copies_are_all_acknowledged_and_stored_once(
    router: Router,
) -> None:
    body = router.hmac.notification(sample_payload("TX-SAME-100"))
    nonce = json.loads(body)["nonce_str"]

    results = _fire_together(router.callback_url, [body] * COPIES)

    assert [status for status, _ in results] == [200] * COPIES
    assert [reply["errcode"] for _, reply in results] == [0] * COPIES
    assert {reply["nonce_str"] for _, reply in results} == {nonce}
    assert len(_stored(router, "TX-SAME-100")) == 1


def test_100_concurrent_reencrypted_copies_are_all_acknowledged_and_stored_once(
    router: Router,
) -> None:
    plaintext = msgspec.json.encode(sample_payload("TX-REENC-100"))
    requests = [router.md5.signed(router.md5.envelope(plaintext)) for _ in range(COPIES)]
    assert len({r["iv"] for r in requests}) == COPIES  # a fresh IV, so a new ciphertext, each
    assert len({r["nonce_str"] for r in requests}) == COPIES

    results = _fire_together(router.callback_url, [msgspec.json.encode(r) for r in requests])

    assert [status for status, _ in results] == [200] * COPIES
    assert [reply["errcode"] for _, reply in results] == [0] * COPIES
    assert [reply["nonce_str"] for _, reply in results] == [r["nonce_str"] for r in requests]
    (event,) = _stored(router, "TX-REENC-100")
    assert event["payment"]["mch_id"] == router.md5.mch_id
