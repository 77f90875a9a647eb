"""Routers and workers as processes: modes changed through the CLI, config edits, crashes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import RouterProcess, cli, cli_json, wait_until, write_config

Start = Callable[..., RouterProcess]


def recorder(log: Path, **settings: Any) -> dict[str, Any]:
    """A ``[plugins.NAME]`` table of the tests' Recorder, writing to ``log``, fast retries."""
    return {"use": "tests.sample_plugins:Recorder", "path": str(log), "backoff": 0.05,
            **settings}


def simulate(config: Path, url: str, count: int = 1) -> list[str]:
    sent = cli_json("simulate", "--count", str(count), "--url", url + "/ridecode/arrears",
                    config=config)
    return [outcome["transaction_id"] for outcome in sent]


def deliveries(config: Path, plugin: str) -> dict[str, dict[str, Any]]:
    return {d["transaction_id"]: d
            for d in cli_json("deliveries", "list", "--plugin", plugin, config=config)}


def plugin_modes(config: Path) -> dict[str, str]:
    return {s["name"]: s["mode"] for s in cli_json("plugins", "list", config=config)}


def test_modes_change_live_through_the_cli(tmp_path: Path, start_process: Start) -> None:
    log = tmp_path / "log"
    config = write_config(tmp_path / "config.toml",
                          plugins={"held": recorder(log), "probe": recorder(log)})
    router = start_process(config, "serve", "--port", "0")

    cli("plugins", "pause", "held", "--by", "ops-alice", config=config, check=True)
    [first] = simulate(config, router.url)
    # The probe's delivery of the same payment is done, so the dispatcher has passed over
    # the paused plugin's: held, not merely not yet reached.
    wait_until(lambda: deliveries(config, "probe").get(first, {}).get("status") == "done",
               "the probe delivery done")
    assert deliveries(config, "held")[first]["status"] == "pending"
    assert deliveries(config, "held")[first]["attempt"] == 0

    cli("plugins", "enable", "held", "--by", "ops-bob", config=config, check=True)
    wait_until(lambda: deliveries(config, "held")[first]["status"] == "done",
               "the held delivery released")
    # The router says, in its own log, that it heard each change and from whom.
    wait_until(lambda: router.logged("plugin held: paused -> enabled by ops-bob"),
               "the router's log of the change")
    assert router.logged("plugin held: enabled -> paused by ops-alice")

    cli("plugins", "disable", "held", config=config, check=True)
    [second] = simulate(config, router.url)
    assert second not in deliveries(config, "held")
    assert second in deliveries(config, "probe")

    history = [(c["plugin"], c["from_mode"], c["to_mode"], c["actor"])
               for c in reversed(cli_json("plugins", "history", config=config))]
    assert history[-3:] == [
        ("held", "enabled", "paused", "ops-alice"),
        ("held", "paused", "enabled", "ops-bob"),
        ("held", "enabled", "disabled", history[-1][3]),
    ]
    states = {s["name"]: s for s in cli_json("plugins", "list", config=config)}
    assert states["held"]["mode"] == "disabled"
    assert states["probe"]["done"] == 2


def test_a_config_edit_applies_live_and_a_bad_one_is_refused(
    tmp_path: Path, start_process: Start
) -> None:
    log = tmp_path / "log"
    config = write_config(tmp_path / "config.toml", plugins={"a": recorder(log)})
    router = start_process(config, "serve", "--port", "0")

    write_config(config, plugins={"a": recorder(log, mode="paused"), "b": recorder(log)})
    wait_until(lambda: plugin_modes(config) == {"a": "paused", "b": "enabled"},
               "the edited modes applied")
    [paid] = simulate(config, router.url)
    wait_until(lambda: deliveries(config, "b").get(paid, {}).get("status") == "done",
               "the new plugin b ran")
    assert deliveries(config, "a")[paid]["status"] == "pending"

    write_config(config, plugins={"a": recorder(log, mode="enabled", timeout=-1)})
    wait_until(lambda: router.logged("config edit not applied"), "the bad edit refused")
    assert "plugins.a.timeout: Expected `float` > 0.0" in router.log_text()
    assert plugin_modes(config) == {"a": "paused", "b": "enabled"}
    assert simulate(config, router.url)  # still serving


def test_a_worker_killed_mid_delivery_redoes_it_once(
    tmp_path: Path, start_process: Start
) -> None:
    log = tmp_path / "log"
    # Each call takes 0.5 s, so the kill lands inside one; a lease lapses 1 + 5 s later.
    config = write_config(tmp_path / "config.toml", plugins={
        "slow": recorder(log, slow=0.5, timeout=1.0, concurrency=4)})
    router = start_process(config, "serve", "--port", "0", "--no-dispatch")
    paid = simulate(config, router.url, count=12)

    worker = start_process(config, "worker")
    wait_until(lambda: log.exists() and "effect" in log.read_text(), "a first effect")
    worker.kill9()
    calls_before = log.read_text().count("call slow")
    effects_before = log.read_text().count("effect")
    assert effects_before < 12  # killed mid-way, some calls unfinished

    start_process(config, "worker")
    wait_until(lambda: len(deliveries(config, "slow")) == 12 and all(
        d["status"] == "done" for d in deliveries(config, "slow").values()), "all 12 done",
        timeout=60)
    effects = [line for line in log.read_text().splitlines() if line.startswith("effect")]
    assert sorted(effects) == sorted(f"effect m1:{tx}:slow" for tx in paid)  # each once
    assert log.read_text().count("call slow") > calls_before


def test_replay_through_the_cli_runs_dead_deliveries_again(
    tmp_path: Path, start_process: Start
) -> None:
    log = tmp_path / "log"
    config = write_config(tmp_path / "config.toml",
                          plugins={"doomed": recorder(log, permanent=True)})
    router = start_process(config, "serve", "--port", "0")
    first, second = simulate(config, router.url, count=2)
    wait_until(lambda: {d["status"] for d in deliveries(config, "doomed").values()} == {"dead"}
               and len(deliveries(config, "doomed")) == 2, "both deliveries dead")
    one = deliveries(config, "doomed")[first]["id"]

    def replay(*args: str) -> str:
        return cli("replay", *args, config=config, check=True).stdout

    assert replay("--delivery", str(one)) == "1 delivery due again\n"
    wait_until(lambda: deliveries(config, "doomed")[first]["replays"] == 1
               and deliveries(config, "doomed")[first]["status"] == "dead", "one replayed")
    assert deliveries(config, "doomed")[second]["replays"] == 0
    assert replay("--plugin", "doomed", "--since", "2000-01-01T00:00:00Z") == (
        "2 deliveries due again\n")
    wait_until(lambda: all(d["replays"] >= 1 and d["status"] == "dead"
                           for d in deliveries(config, "doomed").values()), "all replayed")
    assert replay("--plugin", "doomed", "--until", "2000-01-01T00:00:00Z") == (
        "0 deliveries due again\n")
    assert log.read_text().count("call doomed") == 5  # 2 first runs, then 1, then 2 again
