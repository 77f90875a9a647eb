"""``arrears-router bench`` end to end: both servers really run; no timing is asserted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from arrears_router.bench.stores import with_search_path
from tests.harness import cli, postgres_schema


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
    result = bench("--prefill", "500", "--plugins", str(plugins), "--drain", "0",
                   "--attack-rate", "0", *ids)

    (run,) = result["routers"]
    router, ceiling = run["row"], result["ceiling"]
    assert (run["store"], run["instances"]) == ("sqlite", 1)
    assert (router["name"], ceiling["name"]) == ("sqlite", "ceiling")
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
    assert run["ratio"] > 0
    assert result["prefill"] == 500
    assert result["rounds"] == 5
    assert result["random_ids"] is bool(ids)
    assert result["plugins"] == plugins
    assert result["postgresql"] is None
    # Warm-up included: every notification sent was answered errcode 0 and stored once,
    # and every stored payment reached every plugin.
    assert run["sent"] == 350
    assert run["errcode_0"] == 350
    assert run["stored"] == 350
    assert run["deliveries"] == run["deliveries_done"] == 350 * plugins
    assert result["drains"] == []
    assert result["attacks"] == []
    assert run["ok"] is True
    assert result["ok"] is True


def test_bench_times_accept_to_plugins_done_and_the_drain_of_a_backlog() -> None:
    result = bench("--rounds", "2", "--plugins", "2", "--drain", "2000", "--attack-rate", "0")

    assert result["plugins"] == 2
    (run,) = result["routers"]
    assert run["deliveries"] == run["deliveries_done"] == 700
    assert 0 < run["done_p50_ms"] <= run["done_p99_ms"]
    assert run["row"]["settle_s"] >= 0
    assert run["settled_ratio"] > 0

    (drain,) = result["drains"]
    assert drain["store"] == "sqlite"
    assert drain["deliveries"] == drain["done"] == 2000
    assert drain["seconds"] > 0
    assert drain["per_s"] > 0
    for pair in (drain["rss_mb"], drain["peak_rss_mb"]):
        assert len(pair) == 2
        assert min(pair) > 0
    # Peak memory never falls.
    assert drain["peak_rss_mb"][0] <= drain["peak_rss_mb"][1]
    assert {p["label"] for p in drain["processes"]} == {
        "arrears_router serve", "arrears_router.serve.engine_child"}
    assert result["ok"] is True


def test_bench_without_plugins_has_no_delivery_figures() -> None:
    result = bench("--rounds", "2", "--plugins", "0", "--drain", "0", "--attack-rate", "0")

    (run,) = result["routers"]
    router = run["row"]
    assert router["settle_s"] == 0
    assert router["settled_per_s"] == router["accepted_per_s"]
    assert run["done_p50_ms"] is None
    assert run["done_p99_ms"] is None
    assert run["deliveries"] == 0
    assert result["ok"] is True


def test_bench_on_postgresql_measures_each_figure_beside_sqlite_and_leaves_no_schema() -> None:
    import psycopg

    with postgres_schema() as url:
        # The schema the harness made holds a table the bench must leave alone.
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE mine (n integer)")
            before = bench_schemas(db)
        result = bench("--rounds", "2", "--plugins", "2", "--prefill", "200", "--routers", "2",
                       "--drain", "1000", "--attack-rate", "20", "--store", url)
        with psycopg.connect(url, autocommit=True) as db:
            tables = db.execute("SELECT tablename FROM pg_tables"
                                " WHERE schemaname = current_schema()").fetchall()
            left = bench_schemas(db) - before
    assert tables == [("mine",)]
    assert left == set()

    assert result["postgresql"]
    runs = result["routers"]
    assert [(r["row"]["name"], r["store"], r["instances"]) for r in runs] == [
        ("sqlite", "sqlite", 1), ("postgresql", "postgresql", 1),
        ("sqlite x2", "sqlite", 2), ("postgresql x2", "postgresql", 2)]
    for run in runs:
        assert run["ok"] is True
        assert run["sent"] == run["errcode_0"] == run["stored"] == 350
        assert run["deliveries"] == run["deliveries_done"] == 700
        assert run["row"]["requests"] == run["row"]["accepted"] == 300
        labels = {p["label"] for p in run["row"]["processes"]}
        engines = {"arrears_router.serve.engine_child"} if run["instances"] == 1 else {
            "arrears_router.serve.engine_child #1", "arrears_router.serve.engine_child #2"}
        assert engines <= labels
        # The database server's CPU counts for a router on PostgreSQL, on this machine.
        assert ("postgresql" in labels) is (run["store"] == "postgresql")
    assert [d["store"] for d in result["drains"]] == ["sqlite", "postgresql"]
    assert all(d["done"] == d["deliveries"] == 1000 for d in result["drains"])
    assert [a["store"] for a in result["attacks"]] == ["sqlite", "postgresql"]
    assert result["ok"] is True


def bench_schemas(db: Any) -> set[str]:
    return {name for (name,) in db.execute(
        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, 'arrears_router_bench_')")}


def test_bench_refuses_a_store_that_is_not_postgresql() -> None:
    completed = cli("bench", "--store", "sqlite:///tmp/x.db", check=False, timeout=60)
    assert completed.returncode != 0
    assert "--store takes a PostgreSQL URL" in completed.stderr


@pytest.mark.parametrize(("url", "options"), [
    ("postgresql://u@h:5432/db", "-csearch_path=s1"),
    ("postgresql://u:p%40ss@h/db?sslmode=disable&options=-c%20statement_timeout%3D5000",
     "-c statement_timeout=5000 -csearch_path=s1"),
])
def test_a_bench_schema_joins_the_options_the_url_gives(url: str, options: str) -> None:
    merged = conninfo_to_dict(with_search_path(url, "s1"))
    assert merged["options"] == options
    assert {k: v for k, v in merged.items() if k != "options"} == {
        k: v for k, v in conninfo_to_dict(url).items() if k != "options"}


def test_bench_builtins_runs_the_real_plugins_against_sinks_beside_the_no_op_ones() -> None:
    result = bench("--rounds", "1", "--builtins", "--drain", "200", "--plugin-drain", "50",
                   "--lone-idle", "8", "--lone-rate", "40", "--attack-rate", "0")

    noop, real = result["routers"]
    assert (noop["plugins"], real["plugins"]) == ("3 no-op", "built-ins")
    assert real["row"]["name"] == "sqlite built-ins"
    assert noop["calls"] == [] and noop["engine_call_us"] is None
    # Every payment, warm-up included, reached each sink exactly once, and the ledger too.
    assert real["stored"] == 350
    assert real["deliveries"] == real["deliveries_done"] == 4 * 350
    assert [(c["plugin"], c["expected"], c["requests"], c["keys"], c["repeated"], c["unkeyed"])
            for c in real["calls"]] == [(name, 350, 350, 350, 0, 0)
                                        for name in ("unlock", "webhook", "sms")]
    assert real["engine_call_us"] > 0
    assert 0 < real["row"]["settled_per_s"] <= real["row"]["accepted_per_s"]

    builtins = result["builtins"]
    assert builtins["concurrency"] == 32
    alone = builtins["plugin_drains"]
    assert [d["plugins"] for d in alone] == ["1 no-op", "unlock", "webhook", "sms", "ledger"]
    for drain in alone:
        assert drain["payments"] == drain["deliveries"] == drain["done"] == 50
        assert drain["idle"] is None and drain["draining"] is None
        assert [c["requests"] for c in drain["calls"]] == (
            [50] if drain["plugins"] in ("unlock", "webhook", "sms") else [])
        assert drain["ok"] is True

    drains = builtins["drains"]
    assert [(d["plugins"], d["dispatch"]) for d in drains] == [
        ("3 no-op", "engine"), ("built-ins", "engine"), ("built-ins", "worker")]
    for drain in drains:
        # The backlog, and the idle lone callbacks that joined it while the plugins paused.
        assert drain["payments"] == 208
        assert drain["deliveries"] == drain["done"] == 208 * (3 if "no-op" in drain["plugins"]
                                                              else 4)
        assert drain["seconds"] > 0 and drain["payments_per_s"] > 0
        assert drain["peak_rss_mb"] > 0
        assert drain["idle"]["requests"] == drain["idle"]["accepted"] == 8
        assert 0 < drain["idle"]["p50_ms"] <= drain["idle"]["p99_ms"]
        assert drain["draining"]["requests"] == drain["draining"]["accepted"]
        assert drain["ok"] is True
    labels = [{p["label"] for p in d["processes"]} for d in drains]
    assert "arrears_router.serve.engine_child" in labels[1]
    assert "arrears_router worker" in labels[2]
    # Each payment stored, lone callbacks during the drain included, was called once.
    for drain in drains[1:]:
        stored = drain["payments"] + drain["draining"]["requests"]
        assert [(c["expected"], c["requests"], c["keys"]) for c in drain["calls"]] == [
            (stored, stored, stored)] * 3
    assert result["ok"] is True
