"""``arrears-router bench`` end to end: both servers really run; no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("ids", [[], ["--random-ids"]], ids=["ids-in-order", "ids-scattered"])
def test_bench_measures_both_servers_and_the_router_stores_every_request(ids: list[str]) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "core", "bench", "--requests", "300", "--warmup", "50",
         "--concurrency", "8", "--prefill", "500", "--json", *ids],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)

    router, ceiling = result["rows"]
    assert (router["name"], ceiling["name"]) == ("router", "ceiling")
    for row in (router, ceiling):
        assert row["requests"] == 300
        assert row["accepted"] == 300
        assert row["accepted_per_s"] > 0
        assert row["client_cpu_us"] >= 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert result["ratio"] > 0
    assert result["prefill"] == 500
    assert result["rounds"] == 5
    assert result["random_ids"] is bool(ids)
    # Warm-up included: every notification sent was answered errcode 0 and stored once.
    assert result["sent"] == 350
    assert result["errcode_0"] == 350
    assert result["stored"] == 350
    assert result["ok"] is True
