"""``arrears-router bench``: the accept path against its ceiling, and the plugin platform.

One run starts the real router (``arrears-router serve``) on a temporary config and SQLite
store (and, with ``--store``, another on a PostgreSQL schema of its own; with
``--routers N`` also N routers sharing each store), with ``--plugins`` no-op plugins
enabled (``noop_plugin``), and a bare Litestar endpoint on the same server runner
(``ceiling``), and drives them in turns over real HTTP with the same client, the same
pre-built signed notifications and the same concurrency. The ratio of the throughputs is
the headline figure; the server CPU per request says where the difference goes. After each
of a router's turns the bench waits until its plugins are done with every payment of the
turn: that work is the router's too, so it counts in its CPU and in a second rate, and
cannot spill into the next turn. From the store it then reads how long each payment took
from accept to all plugins done.

A second phase (``--drain``) starts a router on a store holding a backlog of deliveries to a
paused no-op plugin, enables it with ``arrears-router plugins enable`` and times the backlog's
drain, watching the router's memory.

``--builtins`` measures real work beside the no-op figures of the same run: the accept phase
gets a router with the four built-ins (``plugin_sets``) calling sinks of their own
(``sinks``, ``sink``), each plugin's cost a delivery is taken from a backlog drained through
it alone, and a backlog of ``--drain`` payments is drained through the no-op plugins, the
built-ins in the engine and the built-ins in a worker process, lone callbacks (``lone``)
timing the accept path before and during each drain (``backlog``).

Every figure is measured on each store in the same run, SQLite first, so a PostgreSQL figure
always has the SQLite one beside it; the routers of the accept phase take turns in its rounds.

This module holds the run and its phases (``cli/bench.py`` its command line). ``client``
is the HTTP client and its measurements, ``servers`` the server processes, ``routers`` the
routers' workspaces, configs and processes, ``stores`` where their stores are made,
``store`` the prefill and the read-only view of a running router's store (through
``database``, either backend), and ``report`` the result and its table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from arrears_router.bench.attack import Flood, field_flood, flood
from arrears_router.bench.backlog import ENGINE_LABEL, backlog_drain, enable, watch_pending
from arrears_router.bench.client import (
    CALLBACK_PATH,
    HOST,
    Measured,
    Phase,
    count_errcode_0,
    drive,
    http_requests,
    percentile,
    processes,
    row,
)
from arrears_router.bench.database import Database
from arrears_router.bench.plugin_sets import BUILTINS, PluginSet, builtin_set, noop_set
from arrears_router.bench.report import (
    Attack,
    BacklogDrain,
    BenchResult,
    Builtins,
    Calls,
    Drain,
    RouterRun,
    Row,
    format_result,
    progress,
)
from arrears_router.bench.routers import MerchantKeys, Site, site, start_routers, workspace
from arrears_router.bench.servers import Running, memory_mb, start_server
from arrears_router.bench.sinks import Sinks, start_sinks
from arrears_router.bench.store import (
    SETTLE_TIMEOUT_S,
    Probe,
    prefill,
    prefill_done_deliveries,
    transaction_ids,
)
from arrears_router.bench.stores import POSTGRESQL, SQLITE, StoreKind
from arrears_router.config import MerchantConfig, ServerConfig, load_config
from arrears_router.serve import module_command
from arrears_router.store import Mode, PluginRoute, StoreError, check_store_url, is_postgres_url
from arrears_router.wire.notifier import Notifier, sample_payload

__all__ = ["SETTLE_TIMEOUT_S", "run_bench"]

MAX_BODY_BYTES = ServerConfig().max_body_bytes
NOOP_DRAIN = 100_000
"""``--drain``'s default: deliveries to one no-op plugin."""
BUILTINS_DRAIN = 20_000
"""``--drain``'s default with ``--builtins``: payments, each for every plugin."""
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
    stores: tuple[StoreKind, ...]
    """SQLite, then the PostgreSQL of ``--store``."""
    routers: int
    builtins: bool = False
    builtin_concurrency: int = 32
    lone_rate: float = 20.0
    lone_idle: int = 200
    plugin_drain: int = 2000


def run_bench(args: argparse.Namespace) -> None:
    drain = args.drain if args.drain is not None else (
        BUILTINS_DRAIN if args.builtins else NOOP_DRAIN)
    if min(args.requests, args.concurrency, args.rounds, args.plugin_concurrency,
           args.routers, args.builtin_concurrency) < 1 or min(
        args.warmup, args.prefill, args.plugins, drain, args.attack_rate, args.lone_rate,
        args.lone_idle, args.plugin_drain,
    ) < 0:
        raise SystemExit("bench: --requests, --concurrency, --rounds, --plugin-concurrency,"
                         " --builtin-concurrency and --routers must be positive, --warmup,"
                         " --prefill, --plugins, --drain, --attack-rate, --lone-rate,"
                         " --lone-idle and --plugin-drain not negative")
    stores = (StoreKind(SQLITE), *_store_option(args.store))
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(_bench(_Settings(
                args.requests, args.warmup, args.concurrency, args.prefill, args.random_ids,
                min(args.rounds, args.requests), args.plugins, drain,
                args.plugin_concurrency, args.attack_rate, stores, args.routers,
                args.builtins, args.builtin_concurrency, args.lone_rate, args.lone_idle,
                args.plugin_drain,
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


def _store_option(url: str | None) -> tuple[StoreKind, ...]:
    """The PostgreSQL store of ``--store``, if given. Its URL is never printed: it may hold a
    password."""
    if url is None:
        return ()
    if not is_postgres_url(url):
        raise SystemExit("bench: --store takes a PostgreSQL URL (postgresql://...); the SQLite"
                         " store is always a temporary file, measured in every run")
    try:
        check_store_url(url)
    except StoreError as exc:
        raise SystemExit(f"bench: --store: {exc}") from None
    return (StoreKind(POSTGRESQL, url),)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the client's own overhead is part of what the cores share."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


# -- the run


@dataclass(frozen=True)
class _Contender:
    """A router configuration of the accept phase: a store, how many routers share it, and
    their plugins."""

    kind: StoreKind
    instances: int
    plugins: PluginSet

    @property
    def name(self) -> str:
        name = f"{self.kind.name} built-ins" if self.plugins.builtin else self.kind.name
        return name if self.instances == 1 else f"{name} x{self.instances}"


@dataclass(frozen=True)
class _Accepted:
    """What the accept phase saw of one contender, beside the client's own measurements."""

    prefill_seconds: float
    stored: int
    deliveries: int
    deliveries_done: int
    done_latencies_ns: list[int]
    calls: tuple[Calls, ...]
    sinks_cpu_s: float


async def _bench(settings: _Settings) -> BenchResult:
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the servers are stopped and the
    # bench's PostgreSQL schemas dropped, not left behind.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    keys = MerchantKeys.new()
    noop = noop_set([f"noop{n}" for n in range(1, settings.plugins + 1)],
                    settings.plugin_concurrency)
    builtins = builtin_set(BUILTINS, settings.builtin_concurrency)
    contenders = []
    for kind in settings.stores:
        contenders.append(_Contender(kind, 1, noop))
        if settings.builtins:
            contenders.append(_Contender(kind, 1, builtins))
    if settings.routers > 1:
        contenders += [_Contender(kind, settings.routers, noop) for kind in settings.stores]
    runs, ceiling, accepted = await _accept_phase(settings, keys, contenders)
    drains = tuple([await _drain_phase(kind, keys, settings.drain, settings.plugin_concurrency)
                    for kind in settings.stores] if settings.drain and not settings.builtins
                   else [])
    real_work = (await _builtins_phase(settings, keys, noop, builtins) if settings.builtins
                 else None)
    attacks = tuple([await _attack_phase(kind, keys, settings) for kind in settings.stores]
                    if settings.attack_rate else [])
    ceiling_row = row("ceiling", ceiling.measured, ceiling.measured.statuses.count(200))
    routers = tuple(_router_run(contender, run, ceiling_row, settings, seen)
                    for contender, run, seen in zip(contenders, runs, accepted, strict=True))
    return BenchResult(
        cpus=os.cpu_count(), python=platform.python_version(),
        postgresql=_postgresql_version(settings.stores), requests=settings.requests,
        warmup=settings.warmup, concurrency=settings.concurrency, plugins=settings.plugins,
        plugin_concurrency=settings.plugin_concurrency, prefill=settings.prefill,
        random_ids=settings.random_ids, rounds=settings.rounds, routers=routers,
        ceiling=ceiling_row, drains=drains, attacks=attacks, builtins=real_work,
        ok=(all(router.ok for router in routers)
            and all(drain.done == drain.deliveries for drain in drains)
            and (real_work is None or all(
                drain.ok for drain in (*real_work.plugin_drains, *real_work.drains)))
            and all(attack.flood_refused == attack.flood_sent
                    and attack.alone.accepted == attack.alone.requests
                    and attack.attacked.accepted == attack.attacked.requests
                    for attack in attacks)),
    )


def _postgresql_version(stores: Sequence[StoreKind]) -> str | None:
    for kind in stores:
        if kind.url is not None:
            with contextlib.closing(Database(kind.url, readonly=True)) as db:
                return db.server_version()
    return None


# -- the accept phase


async def _accept_phase(settings: _Settings, keys: MerchantKeys,
                        contenders: Sequence[_Contender]
                        ) -> tuple[list[Measured], Measured, list[_Accepted]]:
    """Every contender and the ceiling, each on its own store, taking turns in the rounds;
    the runs of the contenders, the ceiling's, and what each contender's store saw."""
    async with contextlib.AsyncExitStack() as stack:
        sinks: list[Sinks] = []
        sites = []
        for contender in contenders:
            sinks.append(await stack.enter_async_context(start_sinks(
                contender.plugins, stack.enter_context(workspace("arrears-bench-sinks-")))))
            sites.append(stack.enter_context(site(
                contender.kind, f"arrears-bench-{contender.kind.name}-", keys,
                contender.plugins, Mode.ENABLED, sinks[-1].ports)))
        merchant = load_config(sites[0].config_file).merchants[0]
        prefill_seconds = [await _prefill(where, merchant, contender.plugins.names, settings)
                           for contender, where in zip(contenders, sites, strict=True)]
        count = settings.warmup + settings.requests
        progress(f"signing and encrypting {count} notifications")
        # After the prefilled ids, as new payments come after stored ones.
        ids = transaction_ids(count, first=settings.prefill, scatter=settings.random_ids)
        requests = http_requests(_notifications(merchant, ids))

        probes = [stack.enter_context(contextlib.closing(Probe(where.url))) for where in sites]
        servers = [
            await stack.enter_async_context(start_routers(
                contender.name, where, contender.instances, probe,
                settle=bool(contender.plugins.names)))
            for contender, where, probe in zip(contenders, sites, probes, strict=True)]
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="arrears-bench-ceiling-")))
        ceiling_cmd = module_command(
            "arrears_router.bench.ceiling", "--host", HOST, "--port", "0",
            "--callback-path", CALLBACK_PATH, "--max-body-bytes", str(MAX_BODY_BYTES))
        servers.append(await stack.enter_async_context(
            start_server("ceiling", ceiling_cmd, log_dir / "ceiling.log")))
        firsts = [probe.last_ids() for probe in probes]
        runs = await _warm_up(servers, requests, settings)
        measured_after = [probe.last_ids()[0] for probe in probes]
        sinks_before = [sink.cpu_s() for sink in sinks]
        await _take_turns(servers, runs, requests, settings)
        accepted = []
        for probe, (first_event, first_delivery), after, seconds, sink, sink_before in zip(
                probes, firsts, measured_after, prefill_seconds, sinks, sinks_before,
                strict=True):
            deliveries, done = probe.deliveries_since(first_delivery)
            stored = probe.last_ids()[0] - first_event
            accepted.append(_Accepted(
                prefill_seconds=seconds, stored=stored,
                deliveries=deliveries, deliveries_done=done,
                done_latencies_ns=probe.done_latencies_ns(after),
                # The warm-up's calls too: the sinks count from their start.
                calls=await sink.calls(stored), sinks_cpu_s=sink.cpu_s() - sink_before,
            ))
    return runs[:-1], runs[-1], accepted


async def _prefill(where: Site, merchant: MerchantConfig, plugins: Sequence[str],
                   settings: _Settings) -> float:
    seconds = await prefill(where.url, merchant, settings.prefill, scatter=settings.random_ids)
    return seconds + await prefill_done_deliveries(where.url, plugins, settings.prefill)


async def _warm_up(servers: Sequence[Running], requests: Sequence[bytes],
                   settings: _Settings) -> list[Measured]:
    """Send each server its warm-up requests; the runs to measure the rounds into."""
    runs = [Measured() for _ in servers]
    for server, run in zip(servers, runs, strict=True):
        progress(f"{server.name}: {settings.warmup} warm-up requests")
        run.warmup.add(await drive(server, requests[:settings.warmup], settings.concurrency))
    return runs


async def _take_turns(servers: Sequence[Running], runs: Sequence[Measured],
                      requests: Sequence[bytes], settings: _Settings) -> None:
    """Send the measured requests in rounds, the servers taking turns (in alternating
    order), so that whatever else loads the machine meanwhile weighs on all of them and not
    on one."""
    warmup, concurrency = settings.warmup, settings.concurrency
    bounds = [warmup + settings.requests * i // settings.rounds
              for i in range(settings.rounds + 1)]
    for round_ in range(settings.rounds):
        progress(f"round {round_ + 1}/{settings.rounds}:"
                 f" {bounds[round_ + 1] - bounds[round_]} requests to each server,"
                 f" {concurrency} connections")
        turns = list(zip(servers, runs, strict=True))
        for server, run in turns if round_ % 2 == 0 else reversed(turns):
            chunk = requests[bounds[round_]:bounds[round_ + 1]]
            run.measured.add(await drive(server, chunk, concurrency))


def _router_run(contender: _Contender, run: Measured, ceiling: Row, settings: _Settings,
                accepted: _Accepted) -> RouterRun:
    sent = len(run.warmup.statuses) + len(run.measured.statuses)
    errcode_0 = count_errcode_0(run.warmup) + count_errcode_0(run.measured)
    measured = row(contender.name, run.measured, count_errcode_0(run.measured))
    ceiling_rate = ceiling.accepted_per_s
    done = sorted(accepted.done_latencies_ns)
    expected_deliveries = len(contender.plugins.names) * accepted.stored
    measured_count = max(1, measured.requests)
    engine = (run.measured.process_cpu_s or {}).get(ENGINE_LABEL)
    calls = measured_count * len(contender.plugins.calls)
    return RouterRun(
        plugins=contender.plugins.label, calls=accepted.calls,
        engine_call_us=round(engine / calls * 1e6, 1) if engine is not None and calls else None,
        sinks_cpu_us=(round(accepted.sinks_cpu_s / measured_count * 1e6, 1)
                      if contender.plugins.calls else None),
        store=contender.kind.name, instances=contender.instances, row=measured,
        prefill_seconds=round(accepted.prefill_seconds, 2),
        ratio=round(measured.accepted_per_s / ceiling_rate, 3) if ceiling_rate else 0.0,
        settled_ratio=round(measured.settled_per_s / ceiling_rate, 3) if ceiling_rate else 0.0,
        done_p50_ms=round(percentile(done, 0.50) / 1e6, 3) if done else None,
        done_p99_ms=round(percentile(done, 0.99) / 1e6, 3) if done else None,
        sent=sent, errcode_0=errcode_0, stored=accepted.stored,
        deliveries=accepted.deliveries, deliveries_done=accepted.deliveries_done,
        ok=(errcode_0 == sent and accepted.stored == sent
            and accepted.deliveries == accepted.deliveries_done == expected_deliveries
            and all(call.ok for call in accepted.calls)),
    )


# -- under attack


async def _attack_phase(kind: StoreKind, keys: MerchantKeys, settings: _Settings) -> Attack:
    """Valid notifications on a few connections, alone and then beside a field flood."""
    count = settings.requests // 2
    with site(kind, "arrears-bench-attack-", keys, None, Mode.ENABLED) as where:
        merchant = load_config(where.config_file).merchants[0]
        await prefill(where.url, merchant, 0, scatter=False)  # makes the store, for the probe
        requests = http_requests(_notifications(
            merchant, transaction_ids(ATTACK_WARMUP + 2 * count, first=0, scatter=False)))
        flood_body = field_flood(merchant, MAX_BODY_BYTES)
        with contextlib.closing(Probe(where.url)) as probe:
            async with start_routers(kind.name, where, 1, probe, settle=False,
                                     log_name="router-attack") as router:
                alone, attacked, flooded = await _attack(router, requests, flood_body,
                                                         count, settings.attack_rate)
    return Attack(
        store=kind.name, rate=settings.attack_rate, flood_body_bytes=len(flood_body),
        flood_sent=flooded.sent, flood_refused=flooded.refused, concurrency=ATTACK_CONCURRENCY,
        alone=row("alone", alone, count_errcode_0(alone)),
        attacked=row("attacked", attacked, count_errcode_0(attacked)),
    )


async def _attack(router: Running, requests: Sequence[bytes], flood_body: bytes, count: int,
                  rate: float) -> tuple[Phase, Phase, Flood]:
    await drive(router, requests[:ATTACK_WARMUP], ATTACK_CONCURRENCY)
    progress(f"attack ({router.name}): {count} valid notifications alone")
    alone = await drive(router, requests[ATTACK_WARMUP:ATTACK_WARMUP + count],
                        ATTACK_CONCURRENCY)
    progress(f"attack ({router.name}): {count} valid notifications beside {rate:g} field"
             f" floods/s of {len(flood_body)} bytes")
    flooded = Flood()
    attacker = asyncio.create_task(flood(router.ports[0], flood_body, rate, flooded))
    try:
        attacked = await drive(router, requests[ATTACK_WARMUP + count:], ATTACK_CONCURRENCY)
    finally:
        attacker.cancel()
        await asyncio.gather(attacker, return_exceptions=True)
    return alone, attacked, flooded


def _notifications(merchant: MerchantConfig, ids: Iterator[str]) -> list[bytes]:
    notifier = Notifier(merchant)
    return [notifier.notification(sample_payload(transaction_id)) for transaction_id in ids]


# -- the drain


async def _drain_phase(kind: StoreKind, keys: MerchantKeys, count: int,
                       concurrency: int) -> Drain:
    """Time a router draining ``count`` deliveries to one no-op plugin, once enabled."""
    with site(kind, "arrears-bench-drain-", keys, noop_set([DRAIN_PLUGIN], concurrency),
              Mode.PAUSED) as where:
        merchant = load_config(where.config_file).merchants[0]
        progress(f"drain ({kind.name}): a backlog of {count} deliveries to the paused plugin"
                 f" {DRAIN_PLUGIN}")
        # Paused before the first payment, so each is stored with its pending delivery.
        prefill_seconds = await prefill(where.url, merchant, count, scatter=False,
                                        routes=[PluginRoute(DRAIN_PLUGIN, Mode.PAUSED)])
        with contextlib.closing(Probe(where.url)) as probe:
            async with start_routers(kind.name, where, 1, probe, settle=False,
                                     log_name="router-drain") as router:
                pid = router.pids[0]
                memory_at_enable = memory_mb(pid)
                cpu_at_enable = router.cpu_s()
                await enable(where.config_file, DRAIN_PLUGIN)
                enabled_at = probe.enabled_at(DRAIN_PLUGIN)
                await watch_pending(probe, count, "drain", poll_s=DRAIN_POLL_S,
                                    detail=_drain_detail(pid))
                finished_at = probe.last_update(0) or enabled_at
                cpu_at_end = router.cpu_s()
                memory_at_end = memory_mb(pid)
                _, done = probe.deliveries_since(0)
    seconds = finished_at - enabled_at
    cpu = {label: cpu - cpu_at_enable.get(label, 0.0) for label, cpu in cpu_at_end.items()}
    return Drain(
        store=kind.name, deliveries=count, done=done, concurrency=concurrency,
        prefill_seconds=round(prefill_seconds, 2), seconds=round(seconds, 3),
        per_s=round(done / seconds, 1) if seconds > 0 else 0.0,
        rss_mb=_pair(memory_at_enable, memory_at_end, 0),
        peak_rss_mb=_pair(memory_at_enable, memory_at_end, 1),
        # Over the watch, which ends a poll after the last delivery: close to ``seconds``.
        processes=processes(cpu, done, seconds) if cpu_at_enable and cpu_at_end else (),
    )


def _drain_detail(pid: int) -> Callable[[int, float], str]:
    """A drain's progress: its rate, and the router's memory."""
    def detail(done: int, elapsed: float) -> str:
        memory = memory_mb(pid)
        return (f", {done / elapsed:,.0f}/s"
                + (f", router RSS {memory[0]:.0f} MB" if memory else ""))
    return detail


def _pair(first: tuple[float, float] | None, last: tuple[float, float] | None,
          index: int) -> tuple[float, float] | None:
    return None if first is None or last is None else (first[index], last[index])


# -- real work (--builtins)


async def _builtins_phase(settings: _Settings, keys: MerchantKeys, noop: PluginSet,
                          builtins: PluginSet) -> Builtins:
    """Each plugin alone (a no-op first, the platform's own share), then the saturated
    drains: the no-op plugins, the built-ins in the engine, and in a worker process."""
    plugin_drains: list[BacklogDrain] = []
    drains: list[BacklogDrain] = []
    for kind in settings.stores:
        if settings.plugin_drain:
            alone = [noop_set(["noop"], settings.builtin_concurrency),
                     *(builtin_set([name], settings.builtin_concurrency) for name in BUILTINS)]
            plugin_drains += [await backlog_drain(kind, keys, plugins, settings.plugin_drain)
                              for plugins in alone]
        if settings.drain:
            rate, idle = settings.lone_rate, settings.lone_idle
            drains += [
                await backlog_drain(kind, keys, noop, settings.drain, lone_rate=rate, idle=idle),
                await backlog_drain(kind, keys, builtins, settings.drain, lone_rate=rate,
                                    idle=idle),
                await backlog_drain(kind, keys, builtins, settings.drain, worker=True,
                                    lone_rate=rate, idle=idle),
            ]
    return Builtins(concurrency=settings.builtin_concurrency, lone_rate=settings.lone_rate,
                    plugin_drains=tuple(plugin_drains), drains=tuple(drains))
