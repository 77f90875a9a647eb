"""``arrears-router bench``: the accept path against its ceiling, and the plugin platform.

One run starts the real router (``python -m core serve``) on a temporary config and SQLite
store, with ``--plugins`` no-op plugins enabled (``core.bench_plugins``), and a bare Litestar
endpoint on the same server runner (``core.bench_ceiling``), and drives them in turns over
real HTTP with the same client, the same pre-built signed notifications and the same
concurrency. The ratio of the two throughputs is the figure DESIGN.md asks for; the server
CPU per request says where the difference goes. After each of the router's turns the bench
waits until its plugins are done with every payment of the turn: that work is the router's
too, so it counts in its CPU and in a second rate, and cannot spill into the ceiling's turn.
From the store it then reads how long each payment took from accept to all plugins done.

A second phase (``--drain``) starts a router on a store holding a backlog of deliveries to a
paused no-op plugin, enables it with ``arrears-router plugins enable`` and times the backlog's
drain, watching the router's memory.

The client is a raw asyncio HTTP/1.1 keep-alive client on pre-encoded requests, because on
a small machine client and server share the cores, and a heavier client would measure itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import math
import os
import platform
import random
import re
import secrets
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import msgspec

from core.bench_plugins import NoOp
from core.config import MerchantConfig, load_config
from core.payment import ArrearsPayment
from core.protocol import Reply
from core.store import Mode, NewEvent, PluginRoute
from core.store.sqlite import SqliteStore
from core.wechat import Notifier, sample_payload

__all__ = ["BenchResult", "Drain", "Row", "add_arguments", "format_result", "run_bench"]

HOST = "127.0.0.1"
CALLBACK_PATH = "/ridecode/arrears"
MAX_BODY_BYTES = 1_048_576
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PREFILL_CHUNK = 5000
NOOP_PLUGIN = f"{NoOp.__module__}:{NoOp.__qualname__}"
# Calls in flight per no-op plugin. A plugin's deliveries go at most this many per claim,
# call and record round trip (two group commits, synced while payments share them), so a
# low figure measures that cap, not the platform: at full accept load on 2 cores, 64 left
# the plugins ~0.1 s behind each turn (accept -> done p50 ~165 ms) and 8 ~0.4 s; from 128 up
# they keep up (p50 ~25 ms) and nothing changes further.
PLUGIN_CONCURRENCY = 256
DRAIN_PLUGIN = "noop"
SETTLE_POLL_S = 0.01
"""The settle wait's poll: short, as the router's settle time is measured to it."""
DRAIN_POLL_S = 0.1
"""The drain's poll; its time is the store's own record, so the poll only paces progress."""
SETTLE_TIMEOUT_S = 600.0
"""Longest the bench waits for deliveries to be done before calling the run a failure."""
_LISTENING = re.compile(rb"listening on http://(\S+):(\d+)")


# -- results


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
    ok: bool
    """Every reply was errcode 0, the store grew by exactly ``sent``, each of those payments
    has one done delivery per plugin, and the drain finished its backlog."""


# -- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=20_000,
                        help="measured requests per server (default: 20000)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="connections, each with one request in flight (default: 32)")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="requests sent first and not measured (default: 1000)")
    parser.add_argument("--prefill", type=int, default=0,
                        help="events put in the store before timing, each with a done delivery"
                             " to each plugin (default: 0)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="measured requests are sent in this many rounds, the servers"
                             " taking turns, so a passing load on the machine hits both alike"
                             " (default: 5)")
    parser.add_argument("--random-ids", action="store_true",
                        help="scatter transaction ids over the whole key space (the worst case"
                             " for the store's index) instead of in time order, as WeChat's are")
    parser.add_argument("--plugins", type=int, default=3,
                        help="no-op plugins enabled on the router while it accepts"
                             " (default: 3; 0 for the accept path alone)")
    parser.add_argument("--plugin-concurrency", type=int, default=PLUGIN_CONCURRENCY,
                        help="each no-op plugin's concurrency, its calls in flight"
                             f" (default: {PLUGIN_CONCURRENCY})")
    parser.add_argument("--drain", type=int, default=100_000,
                        help="then time the drain of a backlog of this many deliveries to a"
                             " no-op plugin once enabled (default: 100000; 0 skips it)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


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


def run_bench(args: argparse.Namespace) -> None:
    if min(args.requests, args.concurrency, args.rounds, args.plugin_concurrency) < 1 or min(
        args.warmup, args.prefill, args.plugins, args.drain
    ) < 0:
        raise SystemExit("bench: --requests, --concurrency, --rounds and --plugin-concurrency"
                         " must be positive,"
                         " --warmup, --prefill, --plugins and --drain not negative")
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(_bench(_Settings(
                args.requests, args.warmup, args.concurrency, args.prefill, args.random_ids,
                min(args.rounds, args.requests), args.plugins, args.drain,
                args.plugin_concurrency,
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


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


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
    return _result(router_run, ceiling_run, settings, accepted, drain)


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
    return [sys.executable, "-m", "core", "serve", "--config", str(config_file),
            "--host", HOST, "--port", "0"]


async def _accept_phase(settings: _Settings) -> tuple[_Measured, _Measured, _Accepted]:
    plugins = [f"noop{n}" for n in range(1, settings.plugins + 1)]
    with _workspace("arrears-bench-") as (config_dir, db_path, log_dir):
        config_file = _write_config(config_dir, db_path, plugins, Mode.ENABLED,
                                    settings.plugin_concurrency)
        merchant = load_config(config_file).merchants[0]
        prefill_seconds = await _prefill(db_path, merchant, settings.prefill,
                                         scatter=settings.random_ids)
        prefill_seconds += await _prefill_done_deliveries(db_path, plugins, settings.prefill)
        count = settings.warmup + settings.requests
        _progress(f"signing and encrypting {count} notifications")
        # After the prefilled ids, as new payments come after stored ones.
        ids = _transaction_ids(count, first=settings.prefill, scatter=settings.random_ids)
        bodies = _notifications(merchant, ids)

        ceiling_cmd = [sys.executable, "-m", "core.bench_ceiling", "--host", HOST, "--port", "0",
                       "--callback-path", CALLBACK_PATH, "--max-body-bytes", str(MAX_BODY_BYTES)]
        async with (_server("router", _router_command(config_file), log_dir / "router.log")
                    as router,
                    _server("ceiling", ceiling_cmd, log_dir / "ceiling.log") as ceiling):
            with contextlib.closing(_Probe(db_path)) as probe:
                if plugins:  # the router's turns end when its plugins are done too
                    router = replace(router, probe=probe)
                first_event, first_delivery = probe.last_ids()
                servers = (router, ceiling)
                requests = [_http_requests(bodies, server.port) for server in servers]
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


def _result(router: _Measured, ceiling: _Measured, settings: _Settings, accepted: _Accepted,
            drain: Drain | None) -> BenchResult:
    sent = len(router.warmup.statuses) + len(router.measured.statuses)
    errcode_0 = _count_errcode_0(router.warmup) + _count_errcode_0(router.measured)
    rows = (_row("router", router.measured, _count_errcode_0(router.measured)),
            _row("ceiling", ceiling.measured, ceiling.measured.statuses.count(200)))
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
        done_p50_ms=round(_percentile(done, 0.50) / 1e6, 3) if done else None,
        done_p99_ms=round(_percentile(done, 0.99) / 1e6, 3) if done else None,
        sent=sent, errcode_0=errcode_0, stored=accepted.stored,
        deliveries=accepted.deliveries, deliveries_done=accepted.deliveries_done, drain=drain,
        ok=(errcode_0 == sent and accepted.stored == sent
            and accepted.deliveries == accepted.deliveries_done == expected_deliveries
            and (drain is None or drain.done == drain.deliveries)),
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
max_body_bytes = {MAX_BODY_BYTES}

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


def _transaction_ids(count: int, *, first: int, scatter: bool) -> Iterator[str]:
    """``count`` distinct 28-digit transaction ids, the ``first``-th onwards.

    WeChat Pay's transaction numbers grow with time (they carry the payment date), so new
    payments land at the end of the store's index: by default the ids are in that order.
    ``scatter`` spreads them over the whole key space instead, so that every insert touches
    a random part of an index that may no longer fit in memory: the worst case.
    """
    if not scatter:
        yield from (f"42{n:026d}" for n in range(first, first + count))
        return
    rng = random.Random()
    seen: set[str] = set()
    while len(seen) < count:
        transaction_id = f"42{rng.randrange(10**26):026d}"
        if transaction_id not in seen:
            seen.add(transaction_id)
            yield transaction_id


def _notifications(merchant: MerchantConfig, ids: Iterator[str]) -> list[bytes]:
    notifier = Notifier(merchant)
    return [notifier.notification(sample_payload(transaction_id)) for transaction_id in ids]


# -- prefill


async def _prefill(db_path: Path, merchant: MerchantConfig, count: int, *, scatter: bool,
                   routes: Sequence[PluginRoute] = ()) -> float:
    """Put ``count`` events in the store through its own API; returns the seconds.

    Each chunk is submitted concurrently, so the group committer writes it in few, large
    transactions, as it would under load. With ``routes`` the store knows those plugins
    first, so each event gets its deliveries to them, as an accepted payment does.
    """
    if count == 0:
        return 0.0
    # Every event keeps a real envelope's size; its content is never read back.
    envelope = Notifier(merchant).notification(sample_payload("prefill"))
    received_at = datetime.now(UTC)
    ids = _transaction_ids(count, first=0, scatter=scatter)
    store = SqliteStore(str(db_path))
    await store.open()
    started = time.perf_counter()
    reported = 0
    try:
        if routes:
            await store.sync_plugins(routes)
        for done in range(0, count, PREFILL_CHUNK):
            chunk = [_prefill_event(merchant, next(ids), envelope, received_at)
                     for _ in range(min(PREFILL_CHUNK, count - done))]
            await asyncio.gather(*(store.accept(event) for event in chunk))
            reported = _report_prefill(done + len(chunk), count, reported, started)
    finally:
        await store.close()
    return time.perf_counter() - started


def _prefill_event(merchant: MerchantConfig, transaction_id: str, envelope: bytes,
                   received_at: datetime) -> NewEvent:
    payment = msgspec.convert(
        {**sample_payload(transaction_id), "appid": merchant.appid, "mch_id": merchant.mch_id},
        ArrearsPayment,
    )
    digest = hashlib.sha256(msgspec.json.encode(payment)).digest()
    return NewEvent(payment=payment, digest=digest, envelope=envelope, received_at=received_at)


def _report_prefill(done: int, total: int, reported: int, started: float) -> int:
    """One line per 10% done; returns the last tenth reported."""
    tenth = done * 10 // total
    if tenth > reported:
        elapsed = time.perf_counter() - started
        _progress(f"prefill {done}/{total} events ({tenth * 10}%), {elapsed:.1f} s,"
                  f" {done / elapsed:,.0f}/s")
    return max(tenth, reported)


_DONE_DELIVERIES = """
    WITH plugin(name) AS (VALUES {names})
    INSERT INTO deliveries (event_id, plugin, status, attempt, next_at, created_at, updated_at)
    SELECT e.id, plugin.name, 'done', 1, ?, ?, ? FROM events e CROSS JOIN plugin
"""


async def _prefill_done_deliveries(db_path: Path, plugins: Sequence[str], events: int) -> float:
    """Give every prefilled event a done delivery to each plugin, as a store that has run
    with them holds, so the store's delivery indexes are as big as the events say.

    Direct SQL in the store's schema (before the router starts): the store has no API to
    write finished deliveries, and through claims this would take longer than the run.
    """
    if not plugins or not events:
        return 0.0
    _progress(f"prefill {events * len(plugins)} done deliveries")
    started = time.perf_counter()
    await asyncio.to_thread(_insert_done_deliveries, db_path, plugins)
    return time.perf_counter() - started


def _insert_done_deliveries(db_path: Path, plugins: Sequence[str]) -> None:
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        # CROSS JOIN keeps events the outer loop: a payment's deliveries get adjacent ids,
        # as the fan-out gives them.
        db.execute(_DONE_DELIVERIES.format(names=",".join(["(?)"] * len(plugins))),
                   [*plugins, now, now, now])
        db.execute("COMMIT")
    finally:
        db.close()


# -- the store, read beside the server


class _Probe:
    """A read-only connection to a running router's store: the bench checks the store and
    reads the times it recorded, it never writes to it."""

    def __init__(self, db_path: Path) -> None:
        self._db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)

    def close(self) -> None:
        self._db.close()

    def _one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...]:
        row: tuple[Any, ...] = self._db.execute(sql, args).fetchone()
        return row

    def last_ids(self) -> tuple[int, int]:
        """The last event's and the last delivery's id (rowids grow: later rows are above)."""
        events, deliveries = self._one(
            "SELECT (SELECT max(id) FROM events), (SELECT max(id) FROM deliveries)")
        return events or 0, deliveries or 0

    def pending(self) -> int:
        (count,) = self._one("SELECT count(*) FROM deliveries WHERE status = 'pending'")
        return int(count)

    def deliveries_since(self, delivery_id: int) -> tuple[int, int]:
        """Deliveries after ``delivery_id``: how many, and how many of them are done."""
        total, done = self._one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'done') FROM deliveries"
            " WHERE id > ?", (delivery_id,))
        return int(total), int(done)

    def last_update(self, delivery_id: int) -> float | None:
        """When the last of the deliveries after ``delivery_id`` changed (unix seconds)."""
        (at,) = self._one("SELECT max(updated_at) FROM deliveries WHERE id > ?", (delivery_id,))
        return None if at is None else float(at)

    def enabled_at(self, plugin: str) -> float:
        """When ``plugin`` was last enabled, from the audit log (unix seconds)."""
        (at,) = self._one(
            "SELECT at FROM mode_changes WHERE plugin = ? AND to_mode = 'enabled'"
            " ORDER BY id DESC LIMIT 1", (plugin,))
        return datetime.fromisoformat(at).timestamp()

    def done_latencies_ns(self, event_id: int) -> list[int]:
        """For each event after ``event_id`` with deliveries: from its receipt to its last
        delivery's last change. The router wrote both: received_at as ISO-8601 UTC text when
        the request came in, updated_at as unix seconds when the outcome was recorded."""
        rows = self._db.execute(
            "SELECT e.received_at, max(d.updated_at) FROM events e"
            " JOIN deliveries d ON d.event_id = e.id WHERE e.id > ? GROUP BY e.id",
            (event_id,)).fetchall()
        return [round((done - datetime.fromisoformat(received).timestamp()) * 1e9)
                for received, done in rows]

    async def settle(self, delivery_id: int, since: float) -> float:
        """Wait until no delivery is pending; the seconds from ``since`` (unix) to the last
        change of a delivery after ``delivery_id``, 0 if none came after it."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while (pending := self.pending()) > 0:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {pending} deliveries still pending after"
                                 f" {SETTLE_TIMEOUT_S:g} s")
            await asyncio.sleep(SETTLE_POLL_S)
        last = self.last_update(delivery_id)
        # A reply may trail its plugins' work by a hair: no negative settle.
        return 0.0 if last is None else max(0.0, last - since)


# -- the drain


async def _drain_phase(count: int, concurrency: int) -> Drain:
    """Time a router draining ``count`` deliveries to one no-op plugin, once enabled."""
    with _workspace("arrears-bench-drain-") as (config_dir, db_path, log_dir):
        config_file = _write_config(config_dir, db_path, [DRAIN_PLUGIN], Mode.PAUSED,
                                    concurrency)
        merchant = load_config(config_file).merchants[0]
        _progress(f"drain: a backlog of {count} deliveries to the paused plugin {DRAIN_PLUGIN}")
        # Paused before the first payment, so each is stored with its pending delivery.
        prefill_seconds = await _prefill(db_path, merchant, count, scatter=False,
                                         routes=[PluginRoute(DRAIN_PLUGIN, Mode.PAUSED)])
        async with _server("router", _router_command(config_file),
                           log_dir / "router-drain.log") as router:
            with contextlib.closing(_Probe(db_path)) as probe:
                memory_at_enable = _memory_mb(router.pid)
                await _enable(config_file, DRAIN_PLUGIN)
                enabled_at = probe.enabled_at(DRAIN_PLUGIN)
                await _watch_drain(probe, count, router.pid)
                finished_at = probe.last_update(0) or enabled_at
                memory_at_end = _memory_mb(router.pid)
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
    _progress(f"drain: arrears-router plugins enable {plugin}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "core", "plugins", "enable", plugin, "--config", str(config_file),
        "--by", "bench", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"bench: plugins enable {plugin} failed:"
                         f" {stderr.decode(errors='replace')[-2000:]}")


async def _watch_drain(probe: _Probe, backlog: int, pid: int) -> None:
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
            memory = _memory_mb(pid)
            done = backlog - pending
            _progress(f"drain: {done}/{backlog} done ({tenth * 10}%), {elapsed:.1f} s,"
                      f" {done / elapsed:,.0f}/s"
                      + (f", router RSS {memory[0]:.0f} MB" if memory else ""))
        await asyncio.sleep(DRAIN_POLL_S)


def _memory_mb(pid: int) -> tuple[float, float] | None:
    """A process's resident and peak resident memory (VmRSS, VmHWM) in MB, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    sizes: dict[str, float] = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            sizes[key] = int(value.split()[0]) / 1024  # kB
    if len(sizes) < 2:
        return None
    return round(sizes["VmRSS"], 1), round(sizes["VmHWM"], 1)


def _pair(first: tuple[float, float] | None, last: tuple[float, float] | None,
          index: int) -> tuple[float, float] | None:
    return None if first is None or last is None else (first[index], last[index])


# -- server processes


@dataclass(frozen=True)
class _Running:
    name: str
    pid: int
    port: int
    probe: _Probe | None = None
    """Its store, when a turn ends only once its plugins are done with the turn's payments."""


@contextlib.asynccontextmanager
async def _server(name: str, command: Sequence[str], log_path: Path) -> AsyncIterator[_Running]:
    """Start a server, yield it once it says it listens; always stop it after."""
    _progress(f"starting the {name}")
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        try:
            port = await _wait_listening(name, process, log_path)
            yield _Running(name, process.pid, port)
        finally:
            await _stop(process)


async def _wait_listening(name: str, process: asyncio.subprocess.Process, log_path: Path) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(process.stdout.readline(), remaining)
        except TimeoutError:
            break
        if not line:
            break
        if match := _LISTENING.search(line):
            return int(match.group(2))
    raise SystemExit(f"bench: the {name} did not start (pid {process.pid}); its log ends:\n"
                     f"{_log_tail(log_path)}")


def _log_tail(log_path: Path) -> str:
    return log_path.read_text(encoding="utf-8", errors="replace")[-2000:]


def _process_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of every thread of ``pid``, from Linux's /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


# -- the client


@dataclass
class _Phase:
    seconds: float = 0.0
    settle_s: float = 0.0
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


    def add(self, other: _Phase) -> None:
        self.seconds += other.seconds
        self.settle_s += other.settle_s
        self.client_cpu_s += other.client_cpu_s
        self.server_cpu_s = (None if self.server_cpu_s is None or other.server_cpu_s is None
                             else self.server_cpu_s + other.server_cpu_s)
        self.latencies_ns += other.latencies_ns
        self.statuses += other.statuses
        self.bodies += other.bodies


@dataclass
class _Measured:
    warmup: _Phase = field(default_factory=_Phase)
    measured: _Phase = field(default_factory=lambda: _Phase(server_cpu_s=0.0))


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with one request in flight.

    It reads only the status line and Content-Length, enough for the fixed-size JSON
    replies both servers send, and stamps the time a reply completes as it arrives.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes, int]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"the server closed the connection: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        try:
            status, length = _parse_head(bytes(self._buffer[:end]))
        except ValueError as exc:
            self._fail(exc)
            return
        total = end + 4 + length
        if len(self._buffer) < total:
            return
        body = bytes(self._buffer[end + 4:total])
        del self._buffer[:total]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((status, body, time.perf_counter_ns()))

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes, int]]:
        """The reply's status, body and completion time (perf_counter_ns)."""
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)


def _parse_head(head: bytes) -> tuple[int, int]:
    """Status code and Content-Length of a response head."""
    status = int(head[9:12])
    lowered = head.lower()
    start = lowered.find(b"\r\ncontent-length:")
    if start < 0:
        raise ValueError(f"reply without Content-Length: {head[:200]!r}")
    end = lowered.find(b"\r\n", start + 2)
    return status, int(lowered[start + 17:end if end >= 0 else None])


def _http_requests(bodies: Sequence[bytes], port: int) -> list[bytes]:
    head = (f"POST {CALLBACK_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    return [b"%s%d\r\n\r\n%s" % (head, len(body), body) for body in bodies]


async def _warm_up(servers: Sequence[_Running], requests: Sequence[Sequence[bytes]],
                   settings: _Settings) -> list[_Measured]:
    """Send each server its warm-up requests; the runs to measure the rounds into."""
    runs = [_Measured() for _ in servers]
    for server, run, sent in zip(servers, runs, requests, strict=True):
        _progress(f"{server.name}: {settings.warmup} warm-up requests")
        run.warmup.add(await _drive(server, sent[:settings.warmup], settings.concurrency))
    return runs


async def _take_turns(servers: Sequence[_Running], runs: Sequence[_Measured],
                      requests: Sequence[Sequence[bytes]], settings: _Settings) -> None:
    """Send the measured requests in rounds, the servers taking turns (in alternating
    order), so that whatever else loads the machine meanwhile weighs on both of them and not
    on one."""
    warmup, concurrency = settings.warmup, settings.concurrency
    bounds = [warmup + settings.requests * i // settings.rounds
              for i in range(settings.rounds + 1)]
    for round_ in range(settings.rounds):
        _progress(f"round {round_ + 1}/{settings.rounds}:"
                  f" {bounds[round_ + 1] - bounds[round_]} requests to each server,"
                  f" {concurrency} connections")
        turns = list(zip(servers, runs, requests, strict=True))
        for server, run, sent in turns if round_ % 2 == 0 else reversed(turns):
            chunk = sent[bounds[round_]:bounds[round_ + 1]]
            run.measured.add(await _drive(server, chunk, concurrency))


async def _drive(server: _Running, requests: Sequence[bytes], concurrency: int) -> _Phase:
    """Send ``requests`` over ``concurrency`` fresh connections (fresh, as the other server's
    turn may have outlasted the server's keep-alive timeout)."""
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(_Connection, HOST, server.port))[1]
                   for _ in range(concurrency)]
    try:
        return await _exchange_all(connections, requests, server)
    finally:
        for connection in connections:
            connection.close()


async def _exchange_all(connections: Sequence[_Connection], requests: Sequence[bytes],
                        server: _Running) -> _Phase:
    phase = _Phase()
    # One iterator shared by every connection: each takes the next request when it is free.
    pending = iter(requests)

    async def run(connection: _Connection) -> None:
        for request in pending:
            started = time.perf_counter_ns()
            status, body, done = await connection.exchange(request)
            phase.latencies_ns.append(done - started)
            phase.statuses.append(status)
            phase.bodies.append(body)

    last_delivery = server.probe.last_ids()[1] if server.probe else 0
    server_cpu, client_cpu = _process_cpu_s(server.pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(run(connection) for connection in connections))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu_s = time.process_time() - client_cpu
    if server.probe is not None:
        # The plugins' work on these payments is the router's too: its time and CPU count.
        phase.settle_s = await server.probe.settle(last_delivery, time.time())
    server_cpu_after = _process_cpu_s(server.pid)
    if server_cpu is not None and server_cpu_after is not None:
        phase.server_cpu_s = server_cpu_after - server_cpu
    return phase


# -- figures


_reply = msgspec.json.Decoder(Reply)


def _count_errcode_0(phase: _Phase) -> int:
    return sum(status == 200 and _errcode(body) == 0
               for status, body in zip(phase.statuses, phase.bodies, strict=True))


def _errcode(body: bytes) -> int | None:
    try:
        return _reply.decode(body).errcode
    except msgspec.DecodeError:
        return None


def _row(name: str, phase: _Phase, accepted: int) -> Row:
    latencies = sorted(phase.latencies_ns)
    count = max(1, len(latencies))
    return Row(
        name=name, requests=len(latencies), accepted=accepted, seconds=round(phase.seconds, 3),
        accepted_per_s=round(accepted / phase.seconds, 1),
        settle_s=round(phase.settle_s, 3),
        settled_per_s=round(accepted / (phase.seconds + phase.settle_s), 1),
        p50_ms=round(_percentile(latencies, 0.50) / 1e6, 3),
        p99_ms=round(_percentile(latencies, 0.99) / 1e6, 3),
        server_cpu_us=None if phase.server_cpu_s is None
        else round(phase.server_cpu_s / count * 1e6, 1),
        client_cpu_us=round(phase.client_cpu_s / count * 1e6, 1),
    )


def _percentile(ordered: Sequence[int], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of them at or below it."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(len(ordered) * fraction))
    return float(ordered[rank - 1])


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


def _cpu(microseconds: float | None) -> str:
    return "n/a" if microseconds is None else f"{microseconds:.0f} us/req"
