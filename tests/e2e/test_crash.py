"""kill -9 in the middle of a burst: every acknowledged payment is in the store afterwards."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from arrears_router.wire.notifier import sample_payload

from .burst import Burst
from .conftest import Router

SENDERS = 32
MAX_NOTIFICATIONS = 3000
KILL_AFTER_ACKS = 200
BURST_DEADLINE_S = 120.0  # a failure bound only: the kill is triggered by the ack count


def _stored_ids(router: Router) -> list[str]:
    return [event["payment"]["transaction_id"] for event in router.events(limit=100_000)]


def test_kill_9_mid_burst_loses_no_acknowledged_payment(router: Router) -> None:
    burst = Burst(
        url=router.callback_url,
        ids=(f"42000{number:023d}" for number in range(MAX_NOTIFICATIONS)),
        body_for=lambda transaction_id: router.hmac.notification(sample_payload(transaction_id)),
        timeout_s=60,
    )
    burst.start(SENDERS)

    assert burst.wait_for_acks(KILL_AFTER_ACKS, BURST_DEADLINE_S), (
        f"only {len(burst.acked)} acks; failures: {(burst.refused + burst.early_breaks)[:5]}"
    )
    burst.going_away()
    router.kill9()
    assert burst.join(BURST_DEADLINE_S), "a sender hangs"

    assert burst.refused == []
    assert burst.early_breaks == []
    assert len(burst.acked) >= KILL_AFTER_ACKS
    assert len(burst.sent) < MAX_NOTIFICATIONS  # the kill really cut the burst short
    acked = set(burst.acked)

    router.start()  # same config, same store file
    stored = _stored_ids(router)
    assert len(stored) == len(set(stored)), "an event is stored twice"
    assert acked <= set(stored), f"lost: {sorted(acked - set(stored))[:5]}"
    assert set(stored) <= burst.sent
    with closing(sqlite3.connect(router.store_path)) as db:
        (integrity,) = db.execute("PRAGMA integrity_check").fetchone()
    assert integrity == "ok"

    # WeChat resends whatever it got no errcode 0 for: each then converges to exactly once.
    unacked = sorted(burst.sent - acked)
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
