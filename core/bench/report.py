"""What ``arrears-router bench`` tells its user: progress lines on stderr as it goes, and
its result, as JSON or as the table ``format_result`` lays out."""

from __future__ import annotations

import sys

import msgspec

from arrears_router.bench.noop_plugin import NoOp

__all__ = ["NOOP_PLUGIN", "Attack", "BacklogDrain", "BenchResult", "Builtins", "Calls", "Drain",
           "LoneLatency", "ProcessCpu", "RouterRun", "Row", "format_result", "progress"]

NOOP_PLUGIN = f"{NoOp.__module__}:{NoOp.__qualname__}"


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- results


class ProcessCpu(msgspec.Struct, frozen=True, kw_only=True):
    """One of a server's processes during the measured turns."""

    label: str
    """What it runs: ``arrears_router serve`` (HTTP), ``arrears_router.serve.engine_child``,
    ``arrears_router.bench.ceiling``, numbered ``#1``, ``#2`` for several routers;
    ``postgresql``: the whole PostgreSQL server serving a router's store, when it runs on
    this machine (the bench's own probe connection left out)."""
    cpu_us: float
    """Its CPU per measured request, all its threads."""
    cores: float
    """Its CPU over the turns' time (settling included): how many cores it kept busy. One
    interpreter runs Python on one core at a time, so a process near 1.0 is what limits the
    server, however idle the machine's other cores are."""


class Row(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    requests: int
    accepted: int
    """Replies that count as done: errcode 0 from the router, HTTP 200 from the ceiling."""
    seconds: float
    accepted_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_us: float | None
    """Server CPU per measured request, all its threads (None where /proc is unavailable),
    the router's plugin deliveries included. Steadier than throughput on a shared machine,
    and it shows where the cores went."""
    client_cpu_us: float
    """The bench client's own CPU per measured request: it must stay small beside the server's."""
    settle_s: float
    """After each turn's last reply, until its payments' deliveries were all done, summed over
    the rounds: the plugins' work the accept path left behind. 0 with no plugins."""
    settled_per_s: float
    """Accepted over ``seconds + settle_s``: the rate at which payments are accepted *and*
    delivered to every plugin, which is what the router can sustain."""
    processes: tuple[ProcessCpu, ...] = ()
    """The server's CPU by process, the busiest first; empty where /proc is unavailable."""


class Calls(msgspec.Struct, frozen=True, kw_only=True):
    """What one plugin's sink received: each payment's call exactly once, or not."""

    plugin: str
    expected: int
    """Payments the router stored: one call each."""
    requests: int
    keys: int
    """Distinct idempotency keys among the requests."""
    repeated: int
    """Requests whose key came before: a payment called twice."""
    unkeyed: int
    ok: bool
    """``requests == keys == expected`` and none without a key."""


class RouterRun(msgspec.Struct, frozen=True, kw_only=True):
    """One router configuration of the accept phase: a store, how many ``serve`` processes
    share it, and its plugins."""

    store: str
    """``sqlite`` (a temporary file) or ``postgresql`` (a schema of its own in ``--store``)."""
    instances: int
    """``serve`` processes on the store, the client's connections spread evenly over them."""
    row: Row
    """Its figures; ``row.name`` is ``store``, with `` xN`` for several instances."""
    prefill_seconds: float
    ratio: float
    """Its throughput over the ceiling's."""
    settled_ratio: float
    """Its settled rate (deliveries done too) over the ceiling's throughput."""
    done_p50_ms: float | None
    """From the router taking a measured payment in (events.received_at) to its last
    plugin's delivery done (deliveries.updated_at); None with no plugins."""
    done_p99_ms: float | None
    sent: int
    """Notifications sent to it, warm-up included."""
    errcode_0: int
    """Replies with HTTP 200 and errcode 0, warm-up included."""
    stored: int
    """How many events its store grew by during the run."""
    deliveries: int
    """Deliveries created for those events: ``plugins`` each."""
    deliveries_done: int
    ok: bool
    """Every reply was errcode 0, the store grew by exactly ``sent``, each of those
    payments has one done delivery per plugin, and each sink had one call a payment."""
    plugins: str = ""
    """``3 no-op`` or ``built-ins`` (``--builtins``)."""
    calls: tuple[Calls, ...] = ()
    """The built-ins' sinks; empty for no-op plugins."""
    engine_call_us: float | None = None
    """The engine's CPU per outgoing call (its CPU over the turns, settling included,
    divided by the calls the sinks received); None without calls."""
    sinks_cpu_us: float | None = None
    """The sinks' own CPU per measured request, all of them: taken from the same cores."""


class Drain(msgspec.Struct, frozen=True, kw_only=True):
    store: str
    deliveries: int
    """The backlog: one delivery to a paused no-op plugin per prefilled payment."""
    done: int
    """Deliveries done at the end (every one, or the run failed)."""
    concurrency: int
    prefill_seconds: float
    seconds: float
    """From the ``plugins enable`` command's mode change to the last delivery done, both as
    the store recorded them (the dispatcher's 0.25 s idle poll included)."""
    per_s: float
    rss_mb: tuple[float, float] | None
    """The router process's resident memory when the plugin was enabled and at the end."""
    peak_rss_mb: tuple[float, float] | None
    """Its peak resident memory (VmHWM) up to those moments: flat if the drain holds nothing
    per delivery."""
    processes: tuple[ProcessCpu, ...] = ()
    """CPU by process over the drain, per delivery (``cpu_us``), PostgreSQL's included."""


class Attack(msgspec.Struct, frozen=True, kw_only=True):
    """Valid notifications alone, then beside a field flood at ``rate`` requests a second."""

    store: str
    rate: float
    flood_body_bytes: int
    flood_sent: int
    flood_refused: int
    """Flood requests answered 40001 or 41300, as each must be."""
    concurrency: int
    """Connections the valid notifications came on: lone traffic, not a saturating load."""
    alone: Row
    attacked: Row


class LoneLatency(msgspec.Struct, frozen=True, kw_only=True):
    """Lone callbacks: paced, a few connections, beside whatever else the router does."""

    requests: int
    accepted: int
    """Answered errcode 0."""
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class BacklogDrain(msgspec.Struct, frozen=True, kw_only=True):
    """A backlog of payments held for paused plugins, enabled at once and drained, timed
    with lone callbacks before (idle) and during the drain (saturated)."""

    store: str
    plugins: str
    """``3 no-op``, ``built-ins``, or one plugin's name."""
    concurrency: int
    """Each plugin's."""
    dispatch: str
    """``engine``: ``serve`` runs the plugins in its engine process; ``worker``: ``serve
    --no-dispatch`` only accepts and a ``worker`` process beside it runs them."""
    payments: int
    """The backlog, lone callbacks of the idle run included."""
    deliveries: int
    done: int
    """Deliveries of the backlog done at the end."""
    seconds: float
    """From the first ``plugins enable`` to the backlog's last delivery done, as the store
    recorded them (the mode poll, up to 0.5 s, included)."""
    payments_per_s: float
    deliveries_per_s: float
    processes: tuple[ProcessCpu, ...] = ()
    """CPU by process over the drain, per payment (``cpu_us``)."""
    engine_payment_us: float | None = None
    """The CPU per payment of the process running the plugins (engine or worker)."""
    engine_call_us: float | None = None
    """Its CPU per outgoing call; None without calls."""
    sinks_cpu_us: float | None = None
    """The sinks' CPU per payment."""
    peak_rss_mb: float | None = None
    """Peak resident memory of the router's processes, added up, at the end."""
    idle: LoneLatency | None = None
    """Before the enable: the plugins paused, the router with nothing else to do."""
    draining: LoneLatency | None = None
    """While the backlog drained."""
    calls: tuple[Calls, ...] = ()
    ok: bool
    """Every delivery done, every lone callback errcode 0, every sink one call a payment."""


class Builtins(msgspec.Struct, frozen=True, kw_only=True):
    """``--builtins``: the real work, beside the no-op figures of the same run."""

    concurrency: int
    """Each built-in's."""
    lone_rate: float
    """Lone callbacks a second, over 4 connections."""
    plugin_drains: tuple[BacklogDrain, ...]
    """One plugin at a time (a no-op first): what each costs the engine a delivery."""
    drains: tuple[BacklogDrain, ...]
    """The saturated drains: no-op plugins, the built-ins in the engine, in a worker."""


class BenchResult(msgspec.Struct, frozen=True, kw_only=True):
    cpus: int | None
    python: str
    postgresql: str | None
    """The PostgreSQL server's version, with ``--store``."""
    requests: int
    warmup: int
    concurrency: int
    plugins: int
    """No-op plugins enabled on the routers, each its own delivery of every payment."""
    plugin_concurrency: int
    prefill: int
    """Events stored before timing in each router's store, each with a done delivery to each
    plugin."""
    random_ids: bool
    """Transaction ids scattered over the key space rather than in order, as WeChat's are."""
    rounds: int
    routers: tuple[RouterRun, ...]
    """SQLite first, then PostgreSQL with ``--store``; then the same with ``--routers N``."""
    ceiling: Row
    drains: tuple[Drain, ...]
    """The drain phase on each store; empty with ``--drain 0``."""
    attacks: tuple[Attack, ...]
    """The phase under attack on each store; empty with ``--attack-rate 0``."""
    ok: bool
    """Every router run is ok, every drain finished its backlog and every flood was refused
    while every valid notification beside it was accepted."""
    builtins: Builtins | None = None
    """With ``--builtins``."""


# -- the table


def format_result(result: BenchResult) -> str:
    routers = result.routers
    lines = [
        f"arrears-router bench: {result.requests} requests after {result.warmup} warm-up,"
        f" {result.concurrency} connections, in {result.rounds} rounds",
        f"routers: {_plugins(result)}",
        f"stores: {_stores(result)}; each prefilled with {result.prefill} events"
        + (f" (each with {result.plugins} done deliveries)" if result.prefill and result.plugins
           else "")
        + f"; transaction ids {'scattered' if result.random_ids else 'in order'}",
        f"machine: {result.cpus} CPUs, Python {result.python}",
        "",
        f"{'':<{_NAME}}{'requests':>10}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'server CPU':>12}{'client CPU':>12}{'settle s':>10}{'settled/s':>11}",
    ]
    lines += [f"{row.name:<{_NAME}}{row.requests:>10}{row.accepted_per_s:>12,.0f}"
              f"{row.p50_ms:>9.2f}{row.p99_ms:>9.2f}{_cpu(row.server_cpu_us):>12}"
              f"{_cpu(row.client_cpu_us):>12}{row.settle_s:>10.2f}{row.settled_per_s:>11,.0f}"
              for row in (*(r.row for r in routers), result.ceiling)]
    lines += [
        "",
        f"{'':<{_NAME}}{'/ceiling':>10}{'settled/ceiling':>17}{'done p50 ms':>13}"
        f"{'done p99 ms':>13}{'prefill s':>11}  errcode 0, stored, deliveries done",
    ]
    lines += [f"{r.row.name:<{_NAME}}{r.ratio:>10.2f}{r.settled_ratio:>17.2f}"
              f"{_ms(r.done_p50_ms):>13}{_ms(r.done_p99_ms):>13}{r.prefill_seconds:>11.1f}"
              f"  {r.errcode_0}, {r.stored} of {r.sent}"
              + (f", {r.deliveries_done} of {r.deliveries}" if r.deliveries else "")
              + ("" if r.ok else "  <-- MISMATCH")
              for r in routers]
    lines += ["", *(f"{row.name} processes: " + ", ".join(
                  f"{p.label} {p.cpu_us:.0f} us/req ({p.cores:.2f} cores busy)"
                  for p in row.processes)
                    for row in (*(r.row for r in routers), result.ceiling) if row.processes)]
    if result.drains:
        lines += ["", *_drain_lines(result.drains)]
    for attack in result.attacks:
        lines += ["", *_attack_lines(attack)]
    if result.builtins is not None:
        lines += ["", *_builtins_lines(result.builtins, routers)]
    return "\n".join(lines)


_NAME = 15
"""Width of the rows' names (``postgresql x2``)."""


def _stores(result: BenchResult) -> str:
    names = dict.fromkeys(r.store for r in result.routers)
    return ", ".join(
        f"PostgreSQL {result.postgresql} (a schema of its own in --store)" if name != "sqlite"
        else "SQLite (a temporary file)" for name in names)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _plugins(result: BenchResult) -> str:
    if not result.plugins:
        return "no plugins"
    return (f"{result.plugins} no-op plugins enabled ({NOOP_PLUGIN},"
            f" concurrency {result.plugin_concurrency} each)")


def _drain_lines(drains: tuple[Drain, ...]) -> list[str]:
    first = drains[0]
    lines = [
        f"drain: {first.deliveries} deliveries to a no-op plugin (concurrency"
        f" {first.concurrency}), from its enable to the last done",
        f"{'':<{_NAME}}{'prefill s':>10}{'seconds':>9}{'deliveries/s':>14}{'done':>9}"
        f"{'RSS MB':>13}{'peak RSS MB':>13}",
    ]
    for drain in drains:
        lines.append(
            f"{drain.store:<{_NAME}}{drain.prefill_seconds:>10.1f}{drain.seconds:>9.2f}"
            f"{drain.per_s:>14,.0f}{drain.done:>9}{_pair(drain.rss_mb):>13}"
            f"{_pair(drain.peak_rss_mb):>13}"
            + ("" if drain.done == drain.deliveries else "  <-- MISMATCH"))
    lines += [f"{drain.store} drain processes: " + ", ".join(
                  f"{p.label} {p.cpu_us:.0f} us/delivery ({p.cores:.2f} cores busy)"
                  for p in drain.processes)
              for drain in drains if drain.processes]
    return lines


def _pair(pair: tuple[float, float] | None) -> str:
    """Memory at the plugin's enable -> at the end."""
    return "n/a" if pair is None else f"{pair[0]:.0f} -> {pair[1]:.0f}"


def _attack_lines(attack: Attack) -> list[str]:
    ok = attack.flood_refused == attack.flood_sent
    return [
        f"{attack.store} under attack: {attack.rate:g} field floods/s of"
        f" {attack.flood_body_bytes} bytes"
        f" (a real merchant's ids, a wrong sign), valid notifications on"
        f" {attack.concurrency} connections",
        *(f"  {row.name:<9} {row.requests} valid: p50 {row.p50_ms:.2f} ms, p99"
          f" {row.p99_ms:.2f} ms, errcode 0: {row.accepted}, server CPU"
          f" {_cpu(row.server_cpu_us)}" for row in (attack.alone, attack.attacked)),
        f"  floods refused: {attack.flood_refused} of {attack.flood_sent}"
        + ("" if ok else "  <-- MISMATCH"),
    ]


def _cpu(microseconds: float | None) -> str:
    return "n/a" if microseconds is None else f"{microseconds:.0f} us/req"


# -- real work (--builtins)


def _builtins_lines(real: Builtins, routers: tuple[RouterRun, ...]) -> list[str]:
    lines = [f"real work: unlock, webhook, sms (generic HTTP, no rate limit), ledger;"
             f" concurrency {real.concurrency} each; a sink process per HTTP plugin"]
    noop = {r.store: r for r in routers if r.instances == 1 and not r.calls}
    for run in routers:
        if not run.calls:
            continue
        base = noop.get(run.store)
        ratio = (f" = {run.row.settled_per_s / base.row.settled_per_s:.2f} of the"
                 f" {base.plugins} plugins' {base.row.settled_per_s:,.0f}/s"
                 if base and base.row.settled_per_s else "")
        lines.append(f"  {run.row.name}: settled {run.row.settled_per_s:,.0f} payments/s{ratio};"
                     f" engine {_engine_us(run.row)} a payment, {_us(run.engine_call_us)} an"
                     f" outgoing call; sinks {_us(run.sinks_cpu_us)} a payment; "
                     + _calls(run.calls))
    if real.plugin_drains:
        lines += ["", f"each plugin alone: a backlog of {real.plugin_drains[0].payments}"
                      " payments, from its enable to the last done",
                  f"{'':<{_NAME}}{'plugin':<10}{'deliveries/s':>14}{'engine us':>11}"
                  f"{'over no-op':>12}{'sinks us':>10}"]
        floor = {d.store: d.engine_payment_us for d in real.plugin_drains if not d.calls
                 and d.plugins.endswith("no-op")}
        for drain in real.plugin_drains:
            floor_us = floor.get(drain.store)
            extra = (drain.engine_payment_us - floor_us
                     if drain.engine_payment_us is not None and floor_us is not None else None)
            lines.append(f"{drain.store:<{_NAME}}{drain.plugins:<10}"
                         f"{drain.deliveries_per_s:>14,.0f}{_num(drain.engine_payment_us):>11}"
                         f"{_num(extra):>12}{_num(drain.sinks_cpu_us):>10}"
                         + ("" if drain.ok else "  <-- MISMATCH"))
    if real.drains:
        lines += ["", f"backlog drains of {real.drains[0].payments} payments (lone callbacks"
                      f" {real.lone_rate:g}/s on 4 connections, idle then during the drain)",
                  f"{'':<{_NAME}}{'plugins':<11}{'in':<8}{'seconds':>8}{'payments/s':>12}"
                  f"{'engine us':>11}{'us/call':>9}{'peak MB':>9}{'idle p50/p99':>15}"
                  f"{'drain p50/p99':>16}{'x idle p99':>12}"]
        for drain in real.drains:
            idle, busy = drain.idle, drain.draining
            lines.append(
                f"{drain.store:<{_NAME}}{drain.plugins:<11}{drain.dispatch:<8}"
                f"{drain.seconds:>8.2f}{drain.payments_per_s:>12,.0f}"
                f"{_num(drain.engine_payment_us):>11}{_num(drain.engine_call_us):>9}"
                f"{_num(drain.peak_rss_mb):>9}{_latency(idle):>15}{_latency(busy):>16}"
                f"{_times(busy, idle):>12}" + ("" if drain.ok else "  <-- MISMATCH"))
        lines += [f"{d.store} {d.plugins} ({d.dispatch}) processes: " + ", ".join(
                      f"{p.label} {p.cpu_us:.0f} us/payment ({p.cores:.2f} cores busy)"
                      for p in d.processes) + (f"; {_calls(d.calls)}" if d.calls else "")
                  for d in real.drains if d.processes]
    return lines


def _engine_us(row: Row) -> str:
    engine = [p.cpu_us for p in row.processes if p.label.endswith("engine_child")]
    return _us(engine[0]) if engine else "n/a"


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} us"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _latency(run: LoneLatency | None) -> str:
    return "-" if run is None or not run.requests else f"{run.p50_ms:.1f}/{run.p99_ms:.1f}"


def _times(busy: LoneLatency | None, idle: LoneLatency | None) -> str:
    if busy is None or idle is None or not idle.p99_ms or not busy.requests:
        return "-"
    return f"{busy.p99_ms / idle.p99_ms:.1f}"


def _calls(calls: tuple[Calls, ...]) -> str:
    if all(call.ok for call in calls):
        return f"every payment called each sink exactly once ({calls[0].expected})"
    return "calls: " + ", ".join(
        f"{c.plugin} {c.requests} for {c.expected} ({c.repeated} repeated, {c.unkeyed} unkeyed)"
        for c in calls) + "  <-- MISMATCH"
