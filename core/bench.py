"""``arrears-router bench``: the accept path's throughput and latency against its ceiling.

One run starts the real router (``python -m core serve``) on a temporary config and SQLite
store, and a bare Litestar endpoint on the same server runner (``core.bench_ceiling``), and
drives them in turns over real HTTP with the same client, the same pre-built signed
notifications and the same concurrency. The ratio of the two throughputs is the figure
DESIGN.md asks for; the server CPU per request says where the difference goes.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import msgspec

from core.config import MerchantConfig, load_config
from core.payment import ArrearsPayment
from core.protocol import Reply
from core.store import NewEvent
from core.store.sqlite import SqliteStore
from core.wechat import Notifier, sample_payload

__all__ = ["BenchResult", "Row", "add_arguments", "format_result", "run_bench"]

HOST = "127.0.0.1"
CALLBACK_PATH = "/ridecode/arrears"
MAX_BODY_BYTES = 1_048_576
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
PREFILL_CHUNK = 5000
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
    """Server CPU per measured request, all its threads (None where /proc is unavailable).
    Steadier than throughput on a shared machine, and it shows where the cores went."""
    client_cpu_us: float
    """The bench client's own CPU per measured request: it must stay small beside the server's."""


class BenchResult(msgspec.Struct, frozen=True, kw_only=True):
    cpus: int | None
    python: str
    requests: int
    warmup: int
    concurrency: int
    prefill: int
    prefill_seconds: float
    random_ids: bool
    """Transaction ids scattered over the key space rather than in order, as WeChat's are."""
    rounds: int
    rows: tuple[Row, ...]
    """The router first, then the ceiling."""
    ratio: float
    """Router throughput over ceiling throughput."""
    sent: int
    """Notifications sent to the router, warm-up included."""
    errcode_0: int
    """Router replies with HTTP 200 and errcode 0, warm-up included."""
    stored: int
    """How many events the router's store grew by during the run."""
    ok: bool
    """Every reply was errcode 0 and the store grew by exactly ``sent``."""


# -- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requests", type=int, default=20_000,
                        help="measured requests per server (default: 20000)")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="connections, each with one request in flight (default: 32)")
    parser.add_argument("--warmup", type=int, default=1000,
                        help="requests sent first and not measured (default: 1000)")
    parser.add_argument("--prefill", type=int, default=0,
                        help="events put in the store before timing (default: 0)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="measured requests are sent in this many rounds, the servers"
                             " taking turns, so a passing load on the machine hits both alike"
                             " (default: 5)")
    parser.add_argument("--random-ids", action="store_true",
                        help="scatter transaction ids over the whole key space (the worst case"
                             " for the store's index) instead of in time order, as WeChat's are")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


@dataclass(frozen=True)
class _Settings:
    requests: int
    warmup: int
    concurrency: int
    prefill: int
    random_ids: bool
    rounds: int


def run_bench(args: argparse.Namespace) -> None:
    if min(args.requests, args.concurrency, args.rounds) < 1 or min(args.warmup, args.prefill) < 0:
        raise SystemExit("bench: --requests, --concurrency and --rounds must be positive,"
                         " --warmup and --prefill not negative")
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            result = runner.run(_bench(_Settings(
                args.requests, args.warmup, args.concurrency, args.prefill, args.random_ids,
                min(args.rounds, args.requests),
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


async def _bench(settings: _Settings) -> BenchResult:
    # SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so the servers are stopped, not orphaned.
    main = asyncio.current_task()
    assert main is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    with tempfile.TemporaryDirectory(prefix="arrears-bench-") as tmp:
        # The router watches its config's folder for edits: the store and the logs, which
        # change all the time, get folders of their own, as data/ does in the default layout.
        config_dir, db_dir, log_dir = (Path(tmp, name) for name in ("config", "store", "logs"))
        for folder in (config_dir, db_dir, log_dir):
            folder.mkdir()
        db_path = db_dir / "bench.db"
        config_file = _write_config(config_dir, db_path)
        merchant = load_config(config_file).merchants[0]
        prefill_seconds = await _prefill(db_path, merchant, settings)
        count = settings.warmup + settings.requests
        _progress(f"signing and encrypting {count} notifications")
        # After the prefilled ids, as new payments come after stored ones.
        ids = _transaction_ids(count, first=settings.prefill, scatter=settings.random_ids)
        bodies = _notifications(merchant, ids)

        router_cmd = [sys.executable, "-m", "core", "serve", "--config", str(config_file),
                      "--host", HOST, "--port", "0"]
        ceiling_cmd = [sys.executable, "-m", "core.bench_ceiling", "--host", HOST, "--port", "0",
                       "--callback-path", CALLBACK_PATH, "--max-body-bytes", str(MAX_BODY_BYTES)]
        async with (_server("router", router_cmd, log_dir / "router.log") as router,
                    _server("ceiling", ceiling_cmd, log_dir / "ceiling.log") as ceiling):
            before = _count_events(db_path)
            router_run, ceiling_run = await _take_turns((router, ceiling), bodies, settings)
            stored = _count_events(db_path) - before

    return _result(router_run, ceiling_run, settings, stored=stored,
                   prefill_seconds=prefill_seconds)


def _result(router: _Measured, ceiling: _Measured, settings: _Settings, *, stored: int,
            prefill_seconds: float) -> BenchResult:
    sent = len(router.warmup.statuses) + len(router.measured.statuses)
    errcode_0 = _count_errcode_0(router.warmup) + _count_errcode_0(router.measured)
    rows = (_row("router", router.measured, _count_errcode_0(router.measured)),
            _row("ceiling", ceiling.measured, ceiling.measured.statuses.count(200)))
    ceiling_rate = rows[1].accepted_per_s
    return BenchResult(
        cpus=os.cpu_count(), python=platform.python_version(), requests=settings.requests,
        warmup=settings.warmup, concurrency=settings.concurrency, prefill=settings.prefill,
        prefill_seconds=round(prefill_seconds, 2), random_ids=settings.random_ids,
        rounds=settings.rounds, rows=rows,
        ratio=round(rows[0].accepted_per_s / ceiling_rate, 3) if ceiling_rate else 0.0,
        sent=sent, errcode_0=errcode_0, stored=stored,
        ok=errcode_0 == sent and stored == sent,
    )


def _write_config(config_dir: Path, db_path: Path) -> Path:
    """A config with one merchant whose keys exist only for this run."""
    config_file = config_dir / "bench.toml"
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
""",
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


async def _prefill(db_path: Path, merchant: MerchantConfig, settings: _Settings) -> float:
    """Put ``settings.prefill`` events in the store through its own API; returns the seconds.

    Each chunk is submitted concurrently, so the group committer writes it in few, large
    transactions, as it would under load.
    """
    count = settings.prefill
    if count == 0:
        return 0.0
    # Every event keeps a real envelope's size; its content is never read back.
    envelope = Notifier(merchant).notification(sample_payload("prefill"))
    received_at = datetime.now(UTC)
    ids = _transaction_ids(count, first=0, scatter=settings.random_ids)
    store = SqliteStore(str(db_path))
    await store.open()
    started = time.perf_counter()
    reported = 0
    try:
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


def _count_events(db_path: Path) -> int:
    """Read-only, beside the server: the bench checks the store, it does not use it."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (count,) = db.execute("SELECT count(*) FROM events").fetchone()
        return int(count)
    finally:
        db.close()


# -- server processes


@dataclass(frozen=True)
class _Running:
    name: str
    pid: int
    port: int


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
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


    def add(self, other: _Phase) -> None:
        self.seconds += other.seconds
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


async def _take_turns(servers: Sequence[_Running], bodies: Sequence[bytes],
                      settings: _Settings) -> list[_Measured]:
    """Warm each server up, then send the measured requests in rounds, the servers taking
    turns (in alternating order), so that whatever else loads the machine meanwhile weighs
    on both of them and not on one."""
    requests = [_http_requests(bodies, server.port) for server in servers]
    runs = [_Measured() for _ in servers]
    warmup, concurrency = settings.warmup, settings.concurrency
    for server, run, sent in zip(servers, runs, requests, strict=True):
        _progress(f"{server.name}: {warmup} warm-up requests")
        run.warmup.add(await _drive(server, sent[:warmup], concurrency))
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
    return runs


async def _drive(server: _Running, requests: Sequence[bytes], concurrency: int) -> _Phase:
    """Send ``requests`` over ``concurrency`` fresh connections (fresh, as the other server's
    turn may have outlasted the server's keep-alive timeout)."""
    loop = asyncio.get_running_loop()
    connections = [(await loop.create_connection(_Connection, HOST, server.port))[1]
                   for _ in range(concurrency)]
    try:
        return await _exchange_all(connections, requests, server.pid)
    finally:
        for connection in connections:
            connection.close()


async def _exchange_all(connections: Sequence[_Connection], requests: Sequence[bytes],
                        server_pid: int) -> _Phase:
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

    server_cpu, client_cpu = _process_cpu_s(server_pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(run(connection) for connection in connections))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu_s = time.process_time() - client_cpu
    server_cpu_after = _process_cpu_s(server_pid)
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
        f"store: prefilled with {result.prefill} events"
        + (f" in {result.prefill_seconds:.1f} s" if result.prefill else "")
        + f"; transaction ids {'scattered' if result.random_ids else 'in order'}",
        f"machine: {result.cpus} CPUs, Python {result.python}",
        "",
        f"{'':<10}{'requests':>10}{'accepted/s':>12}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'server CPU':>12}{'client CPU':>12}",
    ]
    lines += [f"{row.name:<10}{row.requests:>10}{row.accepted_per_s:>12,.0f}"
              f"{row.p50_ms:>9.2f}{row.p99_ms:>9.2f}{_cpu(row.server_cpu_us):>12}"
              f"{_cpu(row.client_cpu_us):>12}" for row in result.rows]
    lines += [
        "",
        f"router/ceiling throughput: {result.ratio:.2f}",
        f"router replies with errcode 0: {result.errcode_0} of {result.sent};"
        f" events stored: {result.stored} of {result.sent} sent"
        + ("" if result.ok else "  <-- MISMATCH"),
    ]
    return "\n".join(lines)


def _cpu(microseconds: float | None) -> str:
    return "n/a" if microseconds is None else f"{microseconds:.0f} us/req"
