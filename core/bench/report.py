"""What ``arrears-router bench`` tells its user: progress lines on stderr as it goes, and
its result, as JSON or as the table ``format_result`` lays out."""

from __future__ import annotations

import sys

import msgspec

from arrears_router.bench.noop_plugin import NoOp

__all__ = ["NOOP_PLUGIN", "BenchResult", "Drain", "ProcessCpu", "Row", "format_result",
           "progress"]

NOOP_PLUGIN = f"{NoOp.__module__}:{NoOp.__qualname__}"


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- results


class ProcessCpu(msgspec.Struct, frozen=True, kw_only=True):
    """One of a server's processes during the measured turns."""

    label: str
    """What it runs: ``arrears_router serve`` (HTTP), ``arrears_router.serve.engine_child``,
    ``arrears_router.bench.ceiling``."""
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


class Drain(msgspec.Struct, frozen=True, kw_only=True):
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


class Attack(msgspec.Struct, frozen=True, kw_only=True):
    """Valid notifications alone, then beside a field flood at ``rate`` requests a second."""

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
    requests: int
    warmup: int
    concurrency: int
    plugins: int
    """No-op plugins enabled on the router, each its own delivery of every payment."""
    plugin_concurrency: int
    prefill: int
    """Events stored before timing, each with a done delivery to each plugin."""
    prefill_seconds: float
    random_ids: bool
    """Transaction ids scattered over the key space rather than in order, as WeChat's are."""
    rounds: int
    rows: tuple[Row, ...]
    """The router first, then the ceiling."""
    ratio: float
    """Router throughput over ceiling throughput."""
    settled_ratio: float
    """The router's settled rate (deliveries done too) over the ceiling's throughput."""
    done_p50_ms: float | None
    """From the router taking a measured payment in (events.received_at) to its last
    plugin's delivery done (deliveries.updated_at); None with no plugins."""
    done_p99_ms: float | None
    sent: int
    """Notifications sent to the router, warm-up included."""
    errcode_0: int
    """Router replies with HTTP 200 and errcode 0, warm-up included."""
    stored: int
    """How many events the router's store grew by during the run."""
    deliveries: int
    """Deliveries created for those events: ``plugins`` each."""
    deliveries_done: int
    drain: Drain | None
    """The drain phase; None with ``--drain 0``."""
    attack: Attack | None
    """The phase under attack; None with ``--attack-rate 0``."""
    ok: bool
    """Every reply was errcode 0, the store grew by exactly ``sent``, each of those payments
    has one done delivery per plugin, and the drain finished its backlog."""


# -- the table


def format_result(result: BenchResult) -> str:
    lines = [
        f"arrears-router bench: {result.requests} requests after {result.warmup} warm-up,"
        f" {result.concurrency} connections, in {result.rounds} rounds",
        f"router: {_plugins(result)}",
        f"store: prefilled with {result.prefill} events"
        + (f" in {result.prefill_seconds:.1f} s" if result.prefill else "")
        + (f" (each with {result.plugins} done deliveries)" if result.prefill and result.plugins
           else "")
        + f"; transaction ids {'scattered' if result.random_ids else 'in order'}",
        f"machine: {result.cpus} CPUs, Python {result.python}",
        "",
        f"{'':<10}{'requests':>10}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'server CPU':>12}{'client CPU':>12}{'settle s':>10}{'settled/s':>11}",
    ]
    lines += [f"{row.name:<10}{row.requests:>10}{row.accepted_per_s:>12,.0f}"
              f"{row.p50_ms:>9.2f}{row.p99_ms:>9.2f}{_cpu(row.server_cpu_us):>12}"
              f"{_cpu(row.client_cpu_us):>12}{row.settle_s:>10.2f}{row.settled_per_s:>11,.0f}"
              for row in result.rows]
    lines += [
        "",
        f"router/ceiling throughput: {result.ratio:.2f}"
        + (f"; with its deliveries done (settled): {result.settled_ratio:.2f}"
           if result.plugins else ""),
    ]
    lines += [f"{row.name} processes: " + ", ".join(
                  f"{p.label} {p.cpu_us:.0f} us/req ({p.cores:.2f} cores busy)"
                  for p in row.processes)
              for row in result.rows if row.processes]
    if result.done_p50_ms is not None and result.done_p99_ms is not None:
        lines.append(f"accept -> all {result.plugins} plugins done:"
                     f" p50 {result.done_p50_ms:.2f} ms, p99 {result.done_p99_ms:.2f} ms")
    lines.append(
        f"router replies with errcode 0: {result.errcode_0} of {result.sent};"
        f" events stored: {result.stored} of {result.sent} sent"
        + (f"; deliveries done: {result.deliveries_done} of {result.plugins * result.stored}"
           if result.plugins else "")
        + ("" if result.ok else "  <-- MISMATCH"))
    if result.drain is not None:
        lines += ["", *_drain_lines(result.drain)]
    if result.attack is not None:
        lines += ["", *_attack_lines(result.attack)]
    return "\n".join(lines)


def _plugins(result: BenchResult) -> str:
    if not result.plugins:
        return "no plugins"
    return (f"{result.plugins} no-op plugins enabled ({NOOP_PLUGIN},"
            f" concurrency {result.plugin_concurrency} each)")


def _drain_lines(drain: Drain) -> list[str]:
    lines = [
        f"drain: {drain.deliveries} deliveries to a no-op plugin (concurrency"
        f" {drain.concurrency}), prefilled in {drain.prefill_seconds:.1f} s",
        f"  enabled -> all done: {drain.seconds:.2f} s, {drain.per_s:,.0f} deliveries/s;"
        f" done {drain.done} of {drain.deliveries}"
        + ("" if drain.done == drain.deliveries else "  <-- MISMATCH"),
    ]
    if drain.rss_mb is not None and drain.peak_rss_mb is not None:
        lines.append(f"  router memory at enable -> at the end: RSS {drain.rss_mb[0]:.0f} ->"
                     f" {drain.rss_mb[1]:.0f} MB, peak RSS {drain.peak_rss_mb[0]:.0f} ->"
                     f" {drain.peak_rss_mb[1]:.0f} MB")
    return lines


def _attack_lines(attack: Attack) -> list[str]:
    ok = attack.flood_refused == attack.flood_sent
    return [
        f"under attack: {attack.rate:g} field floods/s of {attack.flood_body_bytes} bytes"
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
