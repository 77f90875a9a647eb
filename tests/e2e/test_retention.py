"""Retention in a real ``serve``: done deliveries older than ``keep_done`` are pruned in the
background while a burst is accepted, every notification acknowledged; payments, dead
deliveries and the done counts of ``plugins list`` are kept."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from arrears_router.config import load_config
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import RouterProcess, cli_json, wait_until, write_config

from .burst import Burst

SENDERS = 16
ACKS_AFTER_A_PRUNE = 300
"""Notifications still acknowledged once the pruner is seen at work: both run at once."""
MAX_NOTIFICATIONS = 50_000  # a failure bound only: the burst is stopped by the test
DEADLINE_S = 60.0
PRUNED = "retention: pruned"


def notifications(stop: threading.Event) -> Iterator[str]:
    """Distinct transaction ids until ``stop`` is set."""
    for number in itertools.takewhile(lambda _: not stop.is_set(),
                                      range(MAX_NOTIFICATIONS)):
        yield f"TX-RETAIN-{number:06d}"


def deliveries(config: Path, plugin: str) -> list[dict[str, Any]]:
    return cli_json("deliveries", "list", "--plugin", plugin, "--limit", "100000",
                    config=config)


def test_retention_prunes_while_a_burst_is_accepted(
    tmp_path: Path, start_process: Callable[..., RouterProcess], store_url: str,
) -> None:
    """On each store (the ``store_url`` fixture)."""
    config = write_config(
        tmp_path / "config.toml", store={"url": store_url, "keep_done": "1s"},
        plugins={"quick": {"use": "tests.sample_plugins:SyncRecorder",
                           "path": str(tmp_path / "quick.log")},
                 "refusing": {"use": "tests.sample_plugins:Recorder",
                              "path": str(tmp_path / "refusing.log"), "permanent": True}},
    )
    router = start_process(config, "serve", "--port", "0")
    notifier = Notifier(load_config(config).merchants[0])
    stop = threading.Event()
    burst = Burst(url=router.url + "/ridecode/arrears", ids=notifications(stop),
                  body_for=lambda tx: notifier.notification(sample_payload(tx)),
                  timeout_s=DEADLINE_S)
    burst.start(SENDERS)
    try:
        wait_until(lambda: router.logged(PRUNED) or burst.refused or burst.early_breaks,
                   "the pruner at work during the burst", DEADLINE_S)
        pruning_seen_at = len(burst.acked)
        assert burst.wait_for_acks(pruning_seen_at + ACKS_AFTER_A_PRUNE, DEADLINE_S), (
            f"{len(burst.acked)} acked; refused: {burst.refused[:3]}")
    finally:
        stop.set()
        assert burst.join(DEADLINE_S), "a sender hangs"
    assert burst.refused == [] and burst.early_breaks == []
    assert set(burst.acked) == burst.sent  # every one sent answered errcode 0
    acked = len(burst.acked)

    stored = cli_json("events", "list", "--limit", str(MAX_NOTIFICATIONS), config=config)
    assert sorted(e["payment"]["transaction_id"] for e in stored) == sorted(burst.acked)

    def states() -> dict[str, tuple[int, int, int]]:
        return {s["name"]: (s["pending"], s["done"], s["dead"])
                for s in cli_json("plugins", "list", config=config)}

    # Every delivery has run: then every done one goes, the dead ones stay.
    wait_until(lambda: states() == {"quick": (0, acked, 0), "refusing": (0, 0, acked)},
               "every delivery done or dead", DEADLINE_S)
    wait_until(lambda: deliveries(config, "quick") == [], "every done delivery pruned",
               DEADLINE_S)
    assert {d["status"] for d in deliveries(config, "refusing")} == {"dead"}
    assert len(deliveries(config, "refusing")) == acked
    assert states() == {"quick": (0, acked, 0), "refusing": (0, 0, acked)}
    assert len(cli_json("events", "list", "--limit", str(MAX_NOTIFICATIONS),
                        config=config)) == acked
    assert not router.logged("retention: cannot prune")
    assert not router.logged("retention: the round failed")
