"""A stuck synchronous plugin keeps only its own threads: the others deliver, stop is prompt."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from arrears_router.platform.threads import PluginThreads
from arrears_router.store import DeliveryStatus
from arrears_router.testkit import RouterFactory
from tests.harness import DEADLINE_S, wait_until
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


@pytest.mark.anyio
async def test_calls_made_in_one_turn_run_at_once_up_to_the_size() -> None:
    """Each call is promised a thread as it is made: two made together both run, rather than
    the second waiting behind the first on a thread the first was given."""
    together = threading.Barrier(2, timeout=DEADLINE_S)  # broken unless both calls run at once
    threads = PluginThreads("both", size=2)
    try:
        results = await asyncio.gather(threads.run(together.wait), threads.run(together.wait))
    finally:
        threads.shutdown()
    assert sorted(results) == [0, 1]


@pytest.mark.anyio
async def test_a_call_beyond_the_size_waits_for_a_thread_to_finish() -> None:
    release = threading.Event()
    threads = PluginThreads("one", size=1)
    try:
        first = threads.run(release.wait)
        second = threads.run(lambda: "second")
        await asyncio.sleep(0)  # both made; only one thread may exist
        assert not second.done()
        assert [t for t in threading.enumerate() if t.name.startswith("plugin-one-")]
        release.set()
        assert await first is True
        assert await second == "second"
    finally:
        release.set()
        threads.shutdown()
