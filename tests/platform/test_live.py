"""Routers and workers as processes: modes changed through the CLI, config edits, crashes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform.live import MERCHANT, Process, cli, wait_until


def plugin(name: str, log: Path, **settings: object) -> str:
    table = {"use": "tests.sample_plugins:Recorder", "path": str(log), "backoff": 0.05,
             **settings}
    rendered = "\n".join(
        f"{key} = {value!r}".replace("'", '"') if not isinstance(value, bool)
        else f"{key} = {str(value).lower()}"
        for key, value in table.items()
    )
    return f"\n[plugins.{name}]\n{rendered}\n"


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def simulate(config: Path, url: str, count: int = 1) -> list[str]:
    sent = cli(config, "simulate", "--count", str(count), "--url", url + "/ridecode/arrears")
    return [outcome["transaction_id"] for outcome in sent]


def deliveries(config: Path, plugin: str) -> dict[str, dict[str, object]]:
    return {d["transaction_id"]: d for d in cli(config, "deliveries", "list", "--plugin", plugin)}


def test_modes_change_live_through_the_cli(tmp_path: Path, processes: list[Process]) -> None:
    log = tmp_path / "log"
    config = tmp_path / "config.toml"
    config.write_text(MERCHANT + plugin("held", log) + plugin("probe", log))
    router = Process(config, "serve", "--port", "0")
    processes.append(router)

    subprocess.run([sys.executable, "-m", "arrears_router", "plugins", "pause", "held", "--by", "ops-alice",
                    "--config", str(config)], check=True, capture_output=True)
    [first] = simulate(config, router.url)
    # The probe's delivery of the same payment is done, so the dispatcher has passed over
    # the paused plugin's: held, not merely not yet reached.
    wait_until(lambda: deliveries(config, "probe").get(first, {}).get("status") == "done",
               "the probe delivery done")
    assert deliveries(config, "held")[first]["status"] == "pending"
    assert deliveries(config, "held")[first]["attempt"] == 0

    subprocess.run([sys.executable, "-m", "arrears_router", "plugins", "enable", "held", "--by", "ops-bob",
                    "--config", str(config)], check=True, capture_output=True)
    wait_until(lambda: deliveries(config, "held")[first]["status"] == "done",
               "the held delivery released")

    subprocess.run([sys.executable, "-m", "arrears_router", "plugins", "disable", "held",
                    "--config", str(config)], check=True, capture_output=True)
    [second] = simulate(config, router.url)
    assert second not in deliveries(config, "held")
    assert second in deliveries(config, "probe")

    history = [(c["plugin"], c["from_mode"], c["to_mode"], c["actor"])
               for c in reversed(cli(config, "plugins", "history"))]
    assert history[-3:] == [
        ("held", "enabled", "paused", "ops-alice"),
        ("held", "paused", "enabled", "ops-bob"),
        ("held", "enabled", "disabled", history[-1][3]),
    ]
    states = {s["name"]: s for s in cli(config, "plugins", "list")}
    assert states["held"]["mode"] == "disabled"
    assert states["probe"]["done"] == 2


def test_a_config_edit_applies_live_and_a_bad_one_is_refused(
    tmp_path: Path, processes: list[Process]
) -> None:
    log = tmp_path / "log"
    config = tmp_path / "config.toml"
    config.write_text(MERCHANT + plugin("a", log))
    router = Process(config, "serve", "--port", "0")
    processes.append(router)

    config.write_text(MERCHANT + plugin("a", log, mode="paused") + plugin("b", log))
    wait_until(lambda: {s["name"]: s["mode"] for s in cli(config, "plugins", "list")}
               == {"a": "paused", "b": "enabled"}, "the edited modes applied")
    [paid] = simulate(config, router.url)
    wait_until(lambda: deliveries(config, "b").get(paid, {}).get("status") == "done",
               "the new plugin b ran")
    assert deliveries(config, "a")[paid]["status"] == "pending"

    config.write_text(MERCHANT + plugin("a", log, mode="enabled", timeout=-1))
    wait_until(lambda: router.logged("config edit not applied"), "the bad edit refused")
    assert "plugins.a.timeout: Expected `float` > 0.0" in router.log.read_text()
    states = {s["name"]: s["mode"] for s in cli(config, "plugins", "list")}
    assert states == {"a": "paused", "b": "enabled"}
    assert simulate(config, router.url)  # still serving


def test_a_worker_killed_mid_delivery_redoes_it_once(
    tmp_path: Path, processes: list[Process]
) -> None:
    log = tmp_path / "log"
    config = tmp_path / "config.toml"
    # Each call takes 0.5 s, so the kill lands inside one; a lease lapses 1 + 5 s later.
    config.write_text(MERCHANT + plugin("slow", log, slow=0.5, timeout=1.0, concurrency=4))
    router = Process(config, "serve", "--port", "0", "--no-dispatch")
    processes.append(router)
    paid = simulate(config, router.url, count=12)

    worker = Process(config, "worker")
    processes.append(worker)
    wait_until(lambda: log.exists() and "effect" in log.read_text(), "a first effect")
    worker.kill9()
    calls_before = log.read_text().count("call slow")
    effects_before = log.read_text().count("effect")
    assert effects_before < 12  # killed mid-way, some calls unfinished

    processes.append(Process(config, "worker"))
    wait_until(lambda: len(deliveries(config, "slow")) == 12 and all(
        d["status"] == "done" for d in deliveries(config, "slow").values()), "all 12 done",
        timeout=60)
    effects = [line for line in log.read_text().splitlines() if line.startswith("effect")]
    assert sorted(effects) == sorted(f"effect m1:{tx}:slow" for tx in paid)  # each once
    assert log.read_text().count("call slow") > calls_before


def test_replay_through_the_cli_runs_dead_deliveries_again(
    tmp_path: Path, processes: list[Process]
) -> None:
    log = tmp_path / "log"
    config = tmp_path / "config.toml"
    config.write_text(MERCHANT + plugin("doomed", log, permanent=True))
    router = Process(config, "serve", "--port", "0")
    processes.append(router)
    first, second = simulate(config, router.url, count=2)
    wait_until(lambda: {d["status"] for d in deliveries(config, "doomed").values()} == {"dead"}
               and len(deliveries(config, "doomed")) == 2, "both deliveries dead")
    one = deliveries(config, "doomed")[first]["id"]

    def replay(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "arrears_router", "replay", *args, "--config",
                               str(config)], check=True, capture_output=True, text=True).stdout

    assert replay("--delivery", str(one)) == "1 delivery due again\n"
    wait_until(lambda: deliveries(config, "doomed")[first]["replays"] == 1
               and deliveries(config, "doomed")[first]["status"] == "dead", "one replayed")
    assert deliveries(config, "doomed")[second]["replays"] == 0
    assert replay("--plugin", "doomed", "--since", "2000-01-01T00:00:00") == (
        "2 deliveries due again\n")
    wait_until(lambda: all(d["replays"] >= 1 and d["status"] == "dead"
                           for d in deliveries(config, "doomed").values()), "all replayed")
    assert replay("--plugin", "doomed", "--until", "2000-01-01T00:00:00") == (
        "0 deliveries due again\n")
    assert log.read_text().count("call doomed") == 5  # 2 first runs, then 1, then 2 again
