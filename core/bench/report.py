"""What ``arrears-router bench`` tells its user: progress lines on stderr as it goes, and
its result, as JSON or as the table ``format_result`` lays out."""

from __future__ import annotations

import sys

import msgspec

from arrears_router.bench.noop_plugin import NoOp

__all__ = ["NOOP_PLUGIN", "Attack", "BenchResult", "Drain", "ProcessCpu", "RouterRun", "Row",
           "format_result", "progress"]

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


class RouterRun(msgspec.Struct, frozen=True, kw_only=True):
    """One router configuration of the accept phase: a store, and how many ``serve``
    processes share it."""

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
    """Every reply was errcode 0, the store grew by exactly ``sent``, and each of those
    payments has one done delivery per plugin."""


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
              + (f", {r.deliveries_done} of {result.plugins * r.stored}" if result.plugins
                 else "")
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
