"""kill -9 in the middle of a burst: every acknowledged payment is in the store afterwards."""

from __future__ import annotations

import http.client
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.wechat import sample_payload

from .conftest import Router

SENDERS = 32
MAX_NOTIFICATIONS = 3000
KILL_AFTER_ACKS = 200
BURST_DEADLINE_S = 120.0  # a failure bound only: the kill is triggered by the ack count


@dataclass
class Burst:
    """What the senders saw: ids acknowledged (errcode 0), ids sent, failures before the kill."""

    pending: Iterator[int]
    acked: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    early_failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough_acks: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)

    def next_id(self) -> str | None:
        with self.lock:
            number = next(self.pending, None)
        return None if number is None else f"42000{number:023d}"


def _sender(router: Router, url: str, burst: Burst) -> None:
    """Send distinct notifications back to back on one keep-alive connection until it breaks."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        while (transaction_id := burst.next_id()) is not None:
            body = router.hmac.notification(sample_payload(transaction_id))
            with burst.lock:
                burst.sent.add(transaction_id)
            try:
                connection.request("POST", parts.path, body=body,
                                   headers={"content-type": "application/json"})
                response = connection.getresponse()
                reply = json.loads(response.read())
            except (OSError, http.client.HTTPException) as exc:
                if not burst.killed.is_set():
                    with burst.lock:
                        burst.early_failures.append(f"{transaction_id}: {exc!r}")
                return  # the server is gone: this connection's work is over
            if reply["errcode"] != 0:
                with burst.lock:
                    burst.early_failures.append(f"{transaction_id}: {reply}")
                continue
            with burst.lock:
                burst.acked.add(transaction_id)
                if len(burst.acked) >= KILL_AFTER_ACKS:
                    burst.enough_acks.set()
    finally:
        connection.close()


def _stored_ids(router: Router) -> list[str]:
    return [event["payment"]["transaction_id"] for event in router.events(limit=100_000)]


def test_kill_9_mid_burst_loses_no_acknowledged_payment(router: Router) -> None:
    burst = Burst(pending=iter(range(MAX_NOTIFICATIONS)))
    url = router.callback_url
    senders = [threading.Thread(target=_sender, args=(router, url, burst), daemon=True)
               for _ in range(SENDERS)]
    for sender in senders:
        sender.start()

    assert burst.enough_acks.wait(BURST_DEADLINE_S), (
        f"only {len(burst.acked)} acks; failures: {burst.early_failures[:5]}"
    )
    burst.killed.set()
    router.kill9()
    for sender in senders:
        sender.join(BURST_DEADLINE_S)
    assert not any(sender.is_alive() for sender in senders)

    assert burst.early_failures == []
    assert len(burst.acked) >= KILL_AFTER_ACKS
    assert len(burst.sent) < MAX_NOTIFICATIONS  # the kill really cut the burst short

    router.start()  # same config, same store file
    stored = _stored_ids(router)
    assert len(stored) == len(set(stored)), "an event is stored twice"
    assert burst.acked <= set(stored), f"lost: {sorted(burst.acked - set(stored))[:5]}"
    assert set(stored) <= burst.sent
    with closing(sqlite3.connect(router.store_path)) as db:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
    assert integrity == "ok"

    # WeChat resends whatever it got no errcode 0 for: each then converges to exactly once.
    unacked = sorted(burst.sent - burst.acked)
    for transaction_id in unacked:
        reply = router.post(router.hmac.notification(sample_payload(transaction_id)))
        assert reply["errcode"] == 0, reply
    stored_after = _stored_ids(router)
    assert sorted(stored_after) == sorted(burst.sent)


def test_graceful_restart_keeps_the_store_and_a_retry_is_still_a_duplicate(router: Router) -> None:
    body = router.hmac.notification(sample_payload("TX-RESTART"))
    assert router.post(body)["errcode"] == 0

    # SIGTERM, then a new process on the same store; a graceful stop exits 0.
    assert router.restart() == 0

    assert router.http.get(router.base_url + "/readyz").status_code == 200
    assert router.post(body)["errcode"] == 0  # WeChat's retry after the restart
    assert len(router.event("TX-RESTART")) == 1
    wal = router.store_path.with_name(router.store_path.name + "-wal")
    assert wal.exists()
    assert router.stop() == 0
    assert not wal.exists()  # the store closed cleanly: its WAL checkpointed into the file
