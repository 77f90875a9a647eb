"""A stuck synchronous plugin keeps only its own threads: the others deliver, stop is prompt."""

from __future__ import annotations

import threading
from pathlib import Path

from arrears_router.store import DeliveryStatus
from arrears_router.testkit import RouterFactory
from tests.harness import wait_until
from tests.sample_plugins import HOLDS, Stuck, SyncRecorder

PAYMENTS = 8
"""More than asyncio's default executor has threads on this machine (min(32, CPUs + 4))."""


def test_a_stuck_sync_plugin_starves_no_other_and_does_not_hold_up_a_stop(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    gate = HOLDS.setdefault("stuck-threads", threading.Event())
    try:
        router = arrears_router({
            "stuck": {"gate": "stuck-threads", "timeout": 0.2, "concurrency": 2,
                      "max_attempts": 1},
            "sync": {"path": str(tmp_path / "sync.log"), "concurrency": 1},
        }, classes={"stuck": Stuck, "sync": SyncRecorder})
        reports = [router.pay() for _ in range(PAYMENTS)]
        for report in reports:
            assert report.deliveries["sync"].status is DeliveryStatus.DONE
            stuck = report.deliveries["stuck"]
            assert stuck.status is DeliveryStatus.DEAD
            assert "timed out after 0.2 s" in stuck.last_error
        stuck_threads = [t for t in threading.enumerate() if t.name.startswith("plugin-stuck-")]
        assert len(stuck_threads) == 2  # its concurrency, however many calls timed out

        stopping = threading.Thread(target=router.stop)
        stopping.start()
        wait_until(lambda: not stopping.is_alive(), "the router stopped")
        assert not gate.is_set()  # it stopped with the plugin's threads still stuck
    finally:
        gate.set()
