"""The drain of a backlog through saturated plugins, with lone callbacks beside it.

A store holds ``count`` payments for paused plugins (as after an outage, when WeChat's
retries arrive at once); a router starts on it, lone callbacks time its accept path with
nothing else to do, then every plugin is enabled with ``arrears-router plugins enable``, as
an operator would, and the lone callbacks go on until the backlog is drained. The plugins
run in ``serve``'s engine, or (``worker``) in an ``arrears-router worker`` beside ``serve
--no-dispatch``. With the built-ins, each plugin that calls out has a sink of its own, and
the sinks' counts say that every payment was called exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from arrears_router.bench.client import processes
from arrears_router.bench.lone import LoneCallbacks
from arrears_router.bench.plugin_sets import PluginSet
from arrears_router.bench.report import BacklogDrain, progress
from arrears_router.bench.routers import MerchantKeys, site, start_routers, start_split, workspace
from arrears_router.bench.servers import Running, memory_mb
from arrears_router.bench.sinks import start_sinks
from arrears_router.bench.store import SETTLE_TIMEOUT_S, Probe, prefill
from arrears_router.bench.stores import StoreKind
from arrears_router.config import load_config
from arrears_router.serve import module_command
from arrears_router.store import Mode, PluginRoute

__all__ = ["ENGINE_LABEL", "WORKER_LABEL", "backlog_drain", "enable"]

ENGINE_LABEL = "arrears_router.serve.engine_child"
WORKER_LABEL = "arrears_router worker"
WATCH_POLL_S = 0.25
"""The watch's poll: the drain's time is the store's own record, so it only paces progress,
and each look counts pending rows on the router's cores."""


async def backlog_drain(kind: StoreKind, keys: MerchantKeys, plugins: PluginSet, count: int, *,
                        worker: bool = False, lone_rate: float = 0.0,
                        idle: int = 0) -> BacklogDrain:
    """Drain ``count`` payments through ``plugins``; with ``lone_rate``, ``idle`` lone
    callbacks first, and more all through the drain."""
    dispatch = "worker" if worker else "engine"
    name = f"{kind.name} {plugins.label} ({dispatch})"
    async with contextlib.AsyncExitStack() as stack:
        sinks = await stack.enter_async_context(
            start_sinks(plugins, stack.enter_context(workspace("arrears-bench-sinks-"))))
        where = stack.enter_context(site(kind, "arrears-bench-backlog-", keys, plugins,
                                         Mode.PAUSED, sinks.ports))
        merchant = load_config(where.config_file).merchants[0]
        progress(f"backlog ({name}): {count} payments for the paused plugins")
        await prefill(where.url, merchant, count, scatter=False,
                      routes=[PluginRoute(plugin, Mode.PAUSED) for plugin in plugins.names])
        probe = stack.enter_context(contextlib.closing(Probe(where.url)))
        router = await stack.enter_async_context(
            start_split(name, where, probe) if worker
            else start_routers(name, where, 1, probe, settle=False, log_name="router-backlog"))
        lone = (LoneCallbacks(router.ports[0], merchant, first=count, rate=lone_rate)
                if lone_rate > 0 else None)
        idle_run = None
        if lone is not None and idle:
            progress(f"backlog ({name}): {idle} lone callbacks, {lone_rate:g}/s, idle")
            idle_run = await lone.run(count=idle)
        payments, through = probe.last_ids()  # the backlog: the idle callbacks joined it
        cpu_before, sinks_before = router.cpu_s(), sinks.cpu_s()
        stop = asyncio.Event()
        during = (asyncio.create_task(lone.run(stop=stop)) if lone is not None else None)
        try:
            await asyncio.gather(*(enable(where.config_file, plugin) for plugin in plugins.names))
            enabled_at = min(probe.enabled_at(plugin) for plugin in plugins.names)
            await watch_pending(probe, probe.pending(through), f"backlog ({name})",
                                through=through)
        finally:
            stop.set()
            draining = await during if during is not None else None
        cpu = {label: seconds - cpu_before.get(label, 0.0)
               for label, seconds in router.cpu_s().items()}
        sinks_cpu = sinks.cpu_s() - sinks_before
        finished_at = probe.last_update(0, through) or enabled_at
        peak_rss = _peak_rss_mb(router)
        deliveries, done = probe.deliveries_through(through)
        await probe.settle(0, time.time())  # the lone callbacks' payments too, for the check
        calls = await sinks.calls(probe.last_ids()[0])
        total_all, done_all = probe.deliveries_since(0)
        stored = probe.last_ids()[0]
    seconds = finished_at - enabled_at
    engine = cpu.get(WORKER_LABEL if worker else ENGINE_LABEL)
    outgoing = payments * len(plugins.calls)
    lone_ok = all(run is None or run.accepted == run.requests for run in (idle_run, draining))
    return BacklogDrain(
        store=kind.name, plugins=plugins.label, concurrency=plugins.concurrency,
        dispatch=dispatch, payments=payments, deliveries=deliveries, done=done,
        seconds=round(seconds, 3),
        payments_per_s=round(payments / seconds, 1) if seconds > 0 else 0.0,
        deliveries_per_s=round(done / seconds, 1) if seconds > 0 else 0.0,
        processes=processes(cpu, payments, seconds) if cpu else (),
        engine_payment_us=None if engine is None else round(engine / payments * 1e6, 1),
        engine_call_us=(round(engine / outgoing * 1e6, 1)
                        if engine is not None and outgoing else None),
        sinks_cpu_us=round(sinks_cpu / payments * 1e6, 1) if plugins.calls else None,
        peak_rss_mb=peak_rss, idle=idle_run, draining=draining, calls=calls,
        ok=(deliveries == done == payments * len(plugins.names)
            and total_all == done_all == stored * len(plugins.names)
            and lone_ok and all(call.ok for call in calls)),
    )


async def enable(config_file: Path, plugin: str) -> None:
    """Enable the plugin as an operator would, with the CLI, from another process."""
    progress(f"arrears-router plugins enable {plugin}")
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


async def watch_pending(probe: Probe, backlog: int, what: str, *, through: int | None = None,
                        poll_s: float = WATCH_POLL_S,
                        detail: Callable[[int, float], str] = lambda done, elapsed: "") -> None:
    """Wait until no delivery (up to ``through``) is pending, a progress line per 10% of the
    ``backlog`` done, ending in ``detail(done, elapsed)``."""
    started = time.perf_counter()
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    reported = 0
    while (pending := probe.pending(through)) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what}: {pending} deliveries still pending"
                             f" after {SETTLE_TIMEOUT_S:g} s")
        tenth = (backlog - pending) * 10 // max(1, backlog)
        if tenth > reported:
            reported = tenth
            elapsed, done = time.perf_counter() - started, backlog - pending
            progress(f"{what}: {done}/{backlog} deliveries done ({tenth * 10}%),"
                     f" {elapsed:.1f} s{detail(done, elapsed)}")
        await asyncio.sleep(poll_s)


def _peak_rss_mb(router: Running) -> float | None:
    """Peak resident memory of the router's processes, added up (an upper bound)."""
    peaks = [memory[1] for pid in router.pids if (memory := memory_mb(pid)) is not None]
    return round(sum(peaks), 1) if peaks else None

