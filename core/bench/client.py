"""The bench's HTTP client and what it measures.

A raw asyncio HTTP/1.1 keep-alive client on pre-encoded requests, because on a small
machine client and server share the cores, and a heavier client would measure itself. It
times each exchange, the client's and the server's CPU and, for a router with plugins, the
wait until they are done with a turn's payments; ``row`` turns a phase into its figures.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import msgspec

from arrears_router.bench.report import ProcessCpu, Row
from arrears_router.bench.servers import Running
from arrears_router.wire.envelope import Reply

__all__ = ["CALLBACK_PATH", "HOST", "Connection", "Measured", "Phase", "count_errcode_0", "drive",
           "http_requests", "parse_head", "percentile", "processes", "reply_errcode", "row"]

HOST = "127.0.0.1"
CALLBACK_PATH = "/ridecode/arrears"


@dataclass
class Phase:
    seconds: float = 0.0
    settle_s: float = 0.0
    process_cpu_s: dict[str, float] | None = None
    """CPU seconds of each of the server's processes, by what it runs (None without /proc)."""
    client_cpu_s: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    def add(self, other: Phase) -> None:
        self.seconds += other.seconds
        self.settle_s += other.settle_s
        self.client_cpu_s += other.client_cpu_s
        if self.process_cpu_s is None or other.process_cpu_s is None:
            self.process_cpu_s = None
        else:
            for label, seconds in other.process_cpu_s.items():
                self.process_cpu_s[label] = self.process_cpu_s.get(label, 0.0) + seconds
        self.latencies_ns += other.latencies_ns
        self.statuses += other.statuses
        self.bodies += other.bodies


@dataclass
class Measured:
    warmup: Phase = field(default_factory=Phase)
    measured: Phase = field(default_factory=lambda: Phase(process_cpu_s={}))


class Connection(asyncio.Protocol):
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
            status, length = parse_head(bytes(self._buffer[:end]))
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


def parse_head(head: bytes) -> tuple[int, int]:
    """Status code and Content-Length of a response head."""
    status = int(head[9:12])
    lowered = head.lower()
    start = lowered.find(b"\r\ncontent-length:")
    if start < 0:
        raise ValueError(f"reply without Content-Length: {head[:200]!r}")
    end = lowered.find(b"\r\n", start + 2)
    return status, int(lowered[start + 17:end if end >= 0 else None])


def http_requests(bodies: Sequence[bytes]) -> list[bytes]:
    """The requests for ``bodies``, one set for every server: their Host names no port."""
    head = (f"POST {CALLBACK_PATH} HTTP/1.1\r\nHost: {HOST}\r\n"
            "Content-Type: application/json\r\nContent-Length: ").encode()
    return [b"%s%d\r\n\r\n%s" % (head, len(body), body) for body in bodies]


async def drive(server: Running, requests: Sequence[bytes], concurrency: int) -> Phase:
    """Send ``requests`` over ``concurrency`` fresh connections (fresh, as the other server's
    turn may have outlasted the server's keep-alive timeout), spread evenly over its
    processes' ports."""
    loop = asyncio.get_running_loop()
    ports = server.ports
    connections = [
        (await loop.create_connection(Connection, HOST, ports[n % len(ports)]))[1]
        for n in range(concurrency)]
    try:
        return await _exchange_all(connections, requests, server)
    finally:
        for connection in connections:
            connection.close()


async def _exchange_all(connections: Sequence[Connection], requests: Sequence[bytes],
                        server: Running) -> Phase:
    phase = Phase()
    # One iterator shared by every connection: each takes the next request when it is free.
    pending = iter(requests)

    async def run(connection: Connection) -> None:
        for request in pending:
            started = time.perf_counter_ns()
            status, body, done = await connection.exchange(request)
            phase.latencies_ns.append(done - started)
            phase.statuses.append(status)
            phase.bodies.append(body)

    last_delivery = server.probe.last_ids()[1] if server.probe else 0
    server_cpu, client_cpu = server.cpu_s(), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(run(connection) for connection in connections))
    phase.seconds = time.perf_counter() - started
    phase.client_cpu_s = time.process_time() - client_cpu
    if server.probe is not None:
        # The plugins' work on these payments is the router's too: its time and CPU count.
        phase.settle_s = await server.probe.settle(last_delivery, time.time())
    server_cpu_after = server.cpu_s()
    if server_cpu and server_cpu_after:  # a process started meanwhile counts from zero
        phase.process_cpu_s = {label: seconds - server_cpu.get(label, 0.0)
                               for label, seconds in server_cpu_after.items()}
    return phase


# -- figures


_reply = msgspec.json.Decoder(Reply)


def count_errcode_0(phase: Phase) -> int:
    return sum(status == 200 and reply_errcode(body) == 0
               for status, body in zip(phase.statuses, phase.bodies, strict=True))


def reply_errcode(body: bytes) -> int | None:
    try:
        return _reply.decode(body).errcode
    except msgspec.DecodeError:
        return None


def row(name: str, phase: Phase, accepted: int) -> Row:
    latencies = sorted(phase.latencies_ns)
    count = max(1, len(latencies))
    return Row(
        name=name, requests=len(latencies), accepted=accepted, seconds=round(phase.seconds, 3),
        accepted_per_s=round(accepted / phase.seconds, 1),
        settle_s=round(phase.settle_s, 3),
        settled_per_s=round(accepted / (phase.seconds + phase.settle_s), 1),
        p50_ms=round(percentile(latencies, 0.50) / 1e6, 3),
        p99_ms=round(percentile(latencies, 0.99) / 1e6, 3),
        server_cpu_us=None if phase.process_cpu_s is None
        else round(sum(phase.process_cpu_s.values()) / count * 1e6, 1),
        client_cpu_us=round(phase.client_cpu_s / count * 1e6, 1),
        processes=() if phase.process_cpu_s is None else processes(
            phase.process_cpu_s, count, phase.seconds + phase.settle_s),
    )


def processes(cpu_s: dict[str, float], count: int, seconds: float) -> tuple[ProcessCpu, ...]:
    """CPU by process, per one of ``count`` things done in ``seconds``; the busiest first."""
    return tuple(sorted(
        (ProcessCpu(label=label, cpu_us=round(cpu / max(1, count) * 1e6, 1),
                    cores=round(cpu / seconds, 2) if seconds > 0 else 0.0)
         for label, cpu in cpu_s.items()),
        key=lambda process: -process.cpu_us,
    ))


def percentile(ordered: Sequence[int], fraction: float) -> float:
    """Nearest rank: the smallest value with at least ``fraction`` of them at or below it."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(len(ordered) * fraction))
    return float(ordered[rank - 1])
