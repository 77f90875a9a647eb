"""``arrears-router bench`` end to end: both servers really run; no timing is asserted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import cli


def bench(*args: str) -> dict[str, Any]:
    completed = cli("bench", "--requests", "300", "--warmup", "50", "--concurrency", "8",
                    "--json", *args, check=True, timeout=300)
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


@pytest.mark.parametrize(
    ("ids", "plugins"), [([], 3), (["--random-ids"], 0)], ids=["ids-in-order", "ids-scattered"]
)
def test_bench_measures_both_servers_and_the_router_stores_every_request(
    ids: list[str], plugins: int
) -> None:
    result = bench("--prefill", "500", "--plugins", str(plugins), "--drain", "0", *ids)

    router, ceiling = result["rows"]
    assert (router["name"], ceiling["name"]) == ("router", "ceiling")
    for row in (router, ceiling):
        assert row["requests"] == 300
        assert row["accepted"] == 300
        assert row["accepted_per_s"] > 0
        assert 0 < row["settled_per_s"] <= row["accepted_per_s"]
        assert row["client_cpu_us"] >= 0
        assert 0 < row["p50_ms"] <= row["p99_ms"]
    assert ceiling["settle_s"] == 0
    # The CPU by process: the router's HTTP process and its engine, the ceiling's one.
    assert [p["label"] for p in ceiling["processes"]] == ["arrears_router.bench.ceiling"]
    assert sorted(p["label"] for p in router["processes"]) == [
        "arrears_router serve", "arrears_router.serve.engine_child"]
    for row in (router, ceiling):
        processes = row["processes"]
        assert all(p["cpu_us"] > 0 and p["cores"] > 0 for p in processes)
        assert [p["cpu_us"] for p in processes] == sorted((p["cpu_us"] for p in processes),
                                                          reverse=True)
        assert sum(p["cpu_us"] for p in processes) == pytest.approx(row["server_cpu_us"], abs=1)
    assert result["ratio"] > 0
    assert result["prefill"] == 500
    assert result["rounds"] == 5
    assert result["random_ids"] is bool(ids)
    assert result["plugins"] == plugins
    # Warm-up included: every notification sent was answered errcode 0 and stored once,
    # and every stored payment reached every plugin.
    assert result["sent"] == 350
    assert result["errcode_0"] == 350
    assert result["stored"] == 350
    assert result["deliveries"] == result["deliveries_done"] == 350 * plugins
    assert result["drain"] is None
    assert result["ok"] is True


def test_bench_times_accept_to_plugins_done_and_the_drain_of_a_backlog() -> None:
    result = bench("--rounds", "2", "--plugins", "2", "--drain", "2000")

    assert result["plugins"] == 2
    assert result["deliveries"] == result["deliveries_done"] == 700
    assert 0 < result["done_p50_ms"] <= result["done_p99_ms"]
    router = result["rows"][0]
    assert router["settle_s"] >= 0
    assert result["settled_ratio"] > 0

    drain = result["drain"]
    assert drain["deliveries"] == drain["done"] == 2000
    assert drain["seconds"] > 0
    assert drain["per_s"] > 0
    for pair in (drain["rss_mb"], drain["peak_rss_mb"]):
        assert len(pair) == 2
        assert min(pair) > 0
    # Peak memory never falls.
    assert drain["peak_rss_mb"][0] <= drain["peak_rss_mb"][1]
    assert result["ok"] is True


def test_bench_without_plugins_has_no_delivery_figures() -> None:
    result = bench("--rounds", "2", "--plugins", "0", "--drain", "0")

    router = result["rows"][0]
    assert router["settle_s"] == 0
    assert router["settled_per_s"] == router["accepted_per_s"]
    assert result["done_p50_ms"] is None
    assert result["done_p99_ms"] is None
    assert result["deliveries"] == 0
    assert result["ok"] is True
