"""``arrears-router bench``: the accept path against its ceiling, and the plugin platform.

One run starts the real router (``arrears-router serve``) on a temporary config and SQLite
store, with ``--plugins`` no-op plugins enabled (``noop_plugin``), and a bare Litestar
endpoint on the same server runner (``ceiling``), and drives them in turns over
real HTTP with the same client, the same pre-built signed notifications and the same
concurrency. The ratio of the two throughputs is the headline figure; the server
CPU per request says where the difference goes. After each of the router's turns the bench
waits until its plugins are done with every payment of the turn: that work is the router's
too, so it counts in its CPU and in a second rate, and cannot spill into the ceiling's turn.
From the store it then reads how long each payment took from accept to all plugins done.

A second phase (``--drain``) starts a router on a store holding a backlog of deliveries to a
paused no-op plugin, enables it with ``arrears-router plugins enable`` and times the backlog's
drain, watching the router's memory.

This module holds the run and its two phases (``cli/bench.py`` its command line). ``client``
is the HTTP client and its measurements, ``servers`` the server processes, ``store`` the
prefill and the read-only view of a running router's store, and ``report`` the result and
its table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec

from arrears_router.bench.attack import Flood, field_flood, flood
from arrears_router.bench.client import (
    CALLBACK_PATH,
    HOST,
    Measured,
    count_errcode_0,
    drive,
    http_requests,
    percentile,
    row,
)
from arrears_router.bench.report import (
    NOOP_PLUGIN,
    Attack,
    BenchResult,
    Drain,
    format_result,
    progress,
)
from arrears_router.bench.servers import Running, memory_mb, start_server
from arrears_router.bench.store import (
    SETTLE_TIMEOUT_S,
    Probe,
    prefill,
    prefill_done_deliveries,
    transaction_ids,
)
from arrears_router.config import MerchantConfig, ServerConfig, load_config
from arrears_router.serve import module_command
from arrears_router.store import Mode, PluginRoute
from arrears_router.wire.notifier import Notifier, sample_payload

__all__ = ["run_bench"]

MAX_BODY_BYTES = ServerConfig().max_body_bytes
ATTACK_CONCURRENCY = 4
ATTACK_WARMUP = 200

DRAIN_PLUGIN = "noop"
DRAIN_POLL_S = 0.1
"""The drain's poll; its time is the store's own record, so the poll only paces progress."""


# -- command line


@dataclass(frozen=True)
class _Settings:
    requests: int
    warmup: int
    concurrency: int
    prefill: int
    random_ids: bool
    rounds: int
    plugins: int
    drain: int
    plugin_concurrency: int
    attack_rate: float


def run_bench(args: argparse.Namespace) -> None:
    if min(args.requests, args.concurrency, args.rounds, args.plugin_concurrency) < 1 or min(
        args.warmup, args.prefill, args.plugins, args.drain, args.attack_rate
    ) < 0:
        raise SystemExit("bench: --requests, --concurrency, --rounds and --plugin-concurrency"
                         " must be positive, --warmup, --prefill, --plugins, --drain and"
                         " --attack-rate not negative")
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(_bench(_Settings(
                args.requests, args.warmup, args.concurrency, args.prefill, args.random_ids,
                min(args.rounds, args.requests), args.plugins, args.drain,
                args.plugin_concurrency, args.attack_rate,
            )))
    except ConnectionError as exc:
        raise SystemExit(f"bench: lost a server: {exc}") from None
    except asyncio.CancelledError:
        raise SystemExit("bench: terminated") from None
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    if args.json:
        sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
        sys.stdout.flush()
    else:
        print(format_result(result))
    if not result.ok:
        raise SystemExit(1)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the client's own overhead is part of what the cores share."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# -- the run


@dataclass(frozen=True)
class _Accepted:
    """What the accept phase saw, beside the client's own measurements."""

    prefill_seconds: float
    stored: int
    deliveries: int
    deliveries_done: int
    done_latencies_ns: list[int]


async def _bench(settings: _Settings) -> BenchResult:
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the servers are stopped, not orphaned.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    router_run, ceiling_run, accepted = await _accept_phase(settings)
    drain = (await _drain_phase(settings.drain, settings.plugin_concurrency)
             if settings.drain else None)
    attack = await _attack_phase(settings) if settings.attack_rate else None
    return _result(router_run, ceiling_run, settings, accepted, drain, attack)


@contextlib.contextmanager
def _workspace(prefix: str) -> Iterator[tuple[Path, Path, Path]]:
    """Folders for a router's config, store and logs.

    The router watches its config's folder for edits: the store and the logs, which change
    all the time, get folders of their own, as data/ does in the default layout.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        config_dir, db_dir, log_dir = (Path(tmp, name) for name in ("config", "store", "logs"))
        for folder in (config_dir, db_dir, log_dir):
            folder.mkdir()
        yield config_dir, db_dir / "bench.db", log_dir


def _router_command(config_file: Path) -> list[str]:
    return module_command("arrears_router", "serve", "--config", str(config_file),
                          "--host", HOST, "--port", "0")


# -- the accept phase


async def _accept_phase(settings: _Settings) -> tuple[Measured, Measured, _Accepted]:
    plugins = [f"noop{n}" for n in range(1, settings.plugins + 1)]
    with _workspace("arrears-bench-") as (config_dir, db_path, log_dir):
        config_file = _write_config(config_dir, db_path, plugins, Mode.ENABLED,
                                    settings.plugin_concurrency)
        merchant = load_config(config_file).merchants[0]
        prefill_seconds = await prefill(db_path, merchant, settings.prefill,
                                        scatter=settings.random_ids)
        prefill_seconds += await prefill_done_deliveries(db_path, plugins, settings.prefill)
        count = settings.warmup + settings.requests
        progress(f"signing and encrypting {count} notifications")
        # After the prefilled ids, as new payments come after stored ones.
        ids = transaction_ids(count, first=settings.prefill, scatter=settings.random_ids)
        bodies = _notifications(merchant, ids)

        ceiling_cmd = module_command(
            "arrears_router.bench.ceiling", "--host", HOST, "--port", "0",
            "--callback-path", CALLBACK_PATH, "--max-body-bytes", str(MAX_BODY_BYTES))
        async with (start_server("router", _router_command(config_file), log_dir / "router.log")
                    as router,
                    start_server("ceiling", ceiling_cmd, log_dir / "ceiling.log") as ceiling):
            with contextlib.closing(Probe(db_path)) as probe:
                if plugins:  # the router's turns end when its plugins are done too
                    router = replace(router, probe=probe)
                first_event, first_delivery = probe.last_ids()
                servers = (router, ceiling)
                requests = [http_requests(bodies, server.port) for server in servers]
                runs = await _warm_up(servers, requests, settings)
                measured_after, _ = probe.last_ids()
                await _take_turns(servers, runs, requests, settings)
                deliveries, done = probe.deliveries_since(first_delivery)
                accepted = _Accepted(
                    prefill_seconds=prefill_seconds,
                    stored=probe.last_ids()[0] - first_event,
                    deliveries=deliveries, deliveries_done=done,
                    done_latencies_ns=probe.done_latencies_ns(measured_after),
                )
    return runs[0], runs[1], accepted


async def _warm_up(servers: Sequence[Running], requests: Sequence[Sequence[bytes]],
                   settings: _Settings) -> list[Measured]:
    """Send each server its warm-up requests; the runs to measure the rounds into."""
    runs = [Measured() for _ in servers]
    for server, run, sent in zip(servers, runs, requests, strict=True):
        progress(f"{server.name}: {settings.warmup} warm-up requests")
        run.warmup.add(await drive(server, sent[:settings.warmup], settings.concurrency))
    return runs


async def _take_turns(servers: Sequence[Running], runs: Sequence[Measured],
                      requests: Sequence[Sequence[bytes]], settings: _Settings) -> None:
    """Send the measured requests in rounds, the servers taking turns (in alternating
    order), so that whatever else loads the machine meanwhile weighs on both of them and not
    on one."""
    warmup, concurrency = settings.warmup, settings.concurrency
    bounds = [warmup + settings.requests * i // settings.rounds
              for i in range(settings.rounds + 1)]
    for round_ in range(settings.rounds):
        progress(f"round {round_ + 1}/{settings.rounds}:"
                 f" {bounds[round_ + 1] - bounds[round_]} requests to each server,"
                 f" {concurrency} connections")
        turns = list(zip(servers, runs, requests, strict=True))
        for server, run, sent in turns if round_ % 2 == 0 else reversed(turns):
            chunk = sent[bounds[round_]:bounds[round_ + 1]]
            run.measured.add(await drive(server, chunk, concurrency))


def _result(router: Measured, ceiling: Measured, settings: _Settings, accepted: _Accepted,
            drain: Drain | None, attack: Attack | None) -> BenchResult:
    sent = len(router.warmup.statuses) + len(router.measured.statuses)
    errcode_0 = count_errcode_0(router.warmup) + count_errcode_0(router.measured)
    rows = (row("router", router.measured, count_errcode_0(router.measured)),
            row("ceiling", ceiling.measured, ceiling.measured.statuses.count(200)))
    ceiling_rate = rows[1].accepted_per_s
    done = sorted(accepted.done_latencies_ns)
    expected_deliveries = settings.plugins * accepted.stored
    return BenchResult(
        cpus=os.cpu_count(), python=platform.python_version(), requests=settings.requests,
        warmup=settings.warmup, concurrency=settings.concurrency, plugins=settings.plugins,
        plugin_concurrency=settings.plugin_concurrency, prefill=settings.prefill,
        prefill_seconds=round(accepted.prefill_seconds, 2), random_ids=settings.random_ids,
        rounds=settings.rounds, rows=rows,
        ratio=round(rows[0].accepted_per_s / ceiling_rate, 3) if ceiling_rate else 0.0,
        settled_ratio=round(rows[0].settled_per_s / ceiling_rate, 3) if ceiling_rate else 0.0,
        done_p50_ms=round(percentile(done, 0.50) / 1e6, 3) if done else None,
        done_p99_ms=round(percentile(done, 0.99) / 1e6, 3) if done else None,
        sent=sent, errcode_0=errcode_0, stored=accepted.stored,
        deliveries=accepted.deliveries, deliveries_done=accepted.deliveries_done, drain=drain,
        attack=attack,
        ok=(errcode_0 == sent and accepted.stored == sent
            and accepted.deliveries == accepted.deliveries_done == expected_deliveries
            and (drain is None or drain.done == drain.deliveries)
            and (attack is None or (attack.flood_refused == attack.flood_sent
                                    and attack.alone.accepted == attack.alone.requests
                                    and attack.attacked.accepted == attack.attacked.requests))),
    )


# -- under attack


async def _attack_phase(settings: _Settings) -> Attack:
    """Valid notifications on a few connections, alone and then beside a field flood."""
    count = settings.requests // 2
    with _workspace("arrears-bench-attack-") as (config_dir, db_path, log_dir):
        config_file = _write_config(config_dir, db_path, [], Mode.ENABLED,
                                    settings.plugin_concurrency)
        merchant = load_config(config_file).merchants[0]
        bodies = _notifications(merchant, transaction_ids(ATTACK_WARMUP + 2 * count, first=0,
                                                           scatter=False))
        flood_body = field_flood(merchant, MAX_BODY_BYTES)
        async with start_server("router", _router_command(config_file),
                                log_dir / "router-attack.log") as router:
            requests = http_requests(bodies, router.port)
            await drive(router, requests[:ATTACK_WARMUP], ATTACK_CONCURRENCY)
            progress(f"attack: {count} valid notifications alone")
            alone = await drive(router, requests[ATTACK_WARMUP:ATTACK_WARMUP + count],
                                ATTACK_CONCURRENCY)
            progress(f"attack: {count} valid notifications beside"
                     f" {settings.attack_rate:g} field floods/s of {len(flood_body)} bytes")
            flooded = Flood()
            attacker = asyncio.create_task(
                flood(router.port, flood_body, settings.attack_rate, flooded))
            try:
                attacked = await drive(router, requests[ATTACK_WARMUP + count:],
                                       ATTACK_CONCURRENCY)
            finally:
                attacker.cancel()
                await asyncio.gather(attacker, return_exceptions=True)
    return Attack(
        rate=settings.attack_rate, flood_body_bytes=len(flood_body), flood_sent=flooded.sent,
        flood_refused=flooded.refused, concurrency=ATTACK_CONCURRENCY,
        alone=row("alone", alone, count_errcode_0(alone)),
        attacked=row("attacked", attacked, count_errcode_0(attacked)),
    )


def _write_config(config_dir: Path, db_path: Path, plugins: Sequence[str], mode: Mode,
                  concurrency: int) -> Path:
    """A config with one merchant whose keys exist only for this run, and no-op plugins."""
    config_file = config_dir / "bench.toml"
    tables = "".join(
        f'\n[plugins.{name}]\nuse = "{NOOP_PLUGIN}"\nmode = "{mode}"\n'
        f"concurrency = {concurrency}\n"
        for name in plugins
    )
    config_file.write_text(
        f"""\
[server]
host = "{HOST}"
port = 0
callback_path = "{CALLBACK_PATH}"

[store]
url = "sqlite:///{db_path}"

[[merchants]]
appid = "wxbench00000000001"
mch_id = "1900000999"
sign_types = ["HMAC-SHA256"]
sign_key = "{secrets.token_hex(16)}"
aes_key = "hex:{secrets.token_hex(32)}"
{tables}""",
        encoding="utf-8",
    )
    return config_file


def _notifications(merchant: MerchantConfig, ids: Iterator[str]) -> list[bytes]:
    notifier = Notifier(merchant)
    return [notifier.notification(sample_payload(transaction_id)) for transaction_id in ids]


# -- the drain


async def _drain_phase(count: int, concurrency: int) -> Drain:
    """Time a router draining ``count`` deliveries to one no-op plugin, once enabled."""
    with _workspace("arrears-bench-drain-") as (config_dir, db_path, log_dir):
        config_file = _write_config(config_dir, db_path, [DRAIN_PLUGIN], Mode.PAUSED,
                                    concurrency)
        merchant = load_config(config_file).merchants[0]
        progress(f"drain: a backlog of {count} deliveries to the paused plugin {DRAIN_PLUGIN}")
        # Paused before the first payment, so each is stored with its pending delivery.
        prefill_seconds = await prefill(db_path, merchant, count, scatter=False,
                                        routes=[PluginRoute(DRAIN_PLUGIN, Mode.PAUSED)])
        async with start_server("router", _router_command(config_file),
                                log_dir / "router-drain.log") as router:
            with contextlib.closing(Probe(db_path)) as probe:
                memory_at_enable = memory_mb(router.pid)
                await _enable(config_file, DRAIN_PLUGIN)
                enabled_at = probe.enabled_at(DRAIN_PLUGIN)
                await _watch_drain(probe, count, router.pid)
                finished_at = probe.last_update(0) or enabled_at
                memory_at_end = memory_mb(router.pid)
                _, done = probe.deliveries_since(0)
    seconds = finished_at - enabled_at
    return Drain(
        deliveries=count, done=done, concurrency=concurrency,
        prefill_seconds=round(prefill_seconds, 2), seconds=round(seconds, 3),
        per_s=round(done / seconds, 1) if seconds > 0 else 0.0,
        rss_mb=_pair(memory_at_enable, memory_at_end, 0),
        peak_rss_mb=_pair(memory_at_enable, memory_at_end, 1),
    )


async def _enable(config_file: Path, plugin: str) -> None:
    """Enable the plugin as an operator would, with the CLI, from another process."""
    progress(f"drain: arrears-router plugins enable {plugin}")
    process = await asyncio.create_subprocess_exec(
        *module_command("arrears_router", "plugins", "enable", plugin,
                        "--config", str(config_file), "--by", "bench"),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"bench: plugins enable {plugin} failed:"
                         f" {stderr.decode(errors='replace')[-2000:]}")


async def _watch_drain(probe: Probe, backlog: int, pid: int) -> None:
    """Wait until no delivery is pending, a progress line per 10% done."""
    started = time.perf_counter()
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    reported = 0
    while (pending := probe.pending()) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: drain: {pending} deliveries still pending after"
                             f" {SETTLE_TIMEOUT_S:g} s")
        tenth = (backlog - pending) * 10 // max(1, backlog)
        if tenth > reported:
            reported = tenth
            elapsed = time.perf_counter() - started
            memory = memory_mb(pid)
            done = backlog - pending
            progress(f"drain: {done}/{backlog} done ({tenth * 10}%), {elapsed:.1f} s,"
                     f" {done / elapsed:,.0f}/s"
                     + (f", router RSS {memory[0]:.0f} MB" if memory else ""))
        await asyncio.sleep(DRAIN_POLL_S)


def _pair(first: tuple[float, float] | None, last: tuple[float, float] | None,
          index: int) -> tuple[float, float] | None:
    return None if first is None or last is None else (first[index], last[index])
