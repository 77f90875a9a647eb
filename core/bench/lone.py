"""Lone callbacks: valid notifications at a low, paced rate on a few connections, timing
each, while whatever else the router does (a backlog draining through its plugins) goes on.

Paced rather than back to back, so that they measure what a payment arriving meanwhile
waits, not a second saturating load; each is signed when its turn comes (tens of
microseconds), so any number of them can be sent without building them first.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from arrears_router.bench.client import HOST, Connection, http_requests, percentile, reply_errcode
from arrears_router.bench.report import LoneLatency
from arrears_router.bench.store import transaction_ids
from arrears_router.config import MerchantConfig
from arrears_router.wire.notifier import Notifier, sample_payload

__all__ = ["LONE_CONNECTIONS", "LoneCallbacks"]

LONE_CONNECTIONS = 4


class LoneCallbacks:
    """New payments for one router, ``rate`` a second in all over ``LONE_CONNECTIONS``
    connections, with transaction ids from the ``first``-th on."""

    def __init__(self, port: int, merchant: MerchantConfig, *, first: int, rate: float) -> None:
        self._port = port
        self._notifier = Notifier(merchant)
        self._ids = transaction_ids(10**9, first=first, scatter=False)
        self._interval = LONE_CONNECTIONS / rate
        self.sent = 0
        """Every one sent, all runs together: each is a stored payment."""

    async def run(self, *, count: int | None = None,
                  stop: asyncio.Event | None = None) -> LoneLatency:
        """Send ``count`` of them, or until ``stop`` is set; the replies' figures."""
        loop = asyncio.get_running_loop()
        connections = [(await loop.create_connection(Connection, HOST, self._port))[1]
                       for _ in range(LONE_CONNECTIONS)]
        latencies: list[int] = []
        accepted = 0
        turns = itertools.count() if count is None else iter(range(count))
        started = time.perf_counter()

        async def send(number: int, connection: Connection) -> None:
            nonlocal accepted
            # Spread over the interval, so the connections do not send in step.
            next_at = started + number * self._interval / LONE_CONNECTIONS
            for _ in turns:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                if stop is not None and stop.is_set():
                    return
                request = http_requests([self._notifier.notification(
                    sample_payload(next(self._ids)))])[0]
                self.sent += 1
                begun = time.perf_counter_ns()
                status, body, done = await connection.exchange(request)
                latencies.append(done - begun)
                accepted += status == 200 and reply_errcode(body) == 0
                # A late reply delays this connection's next turn; it never bunches them up.
                next_at = max(next_at + self._interval, time.perf_counter())

        try:
            await asyncio.gather(*(send(n, c) for n, c in enumerate(connections)))
        finally:
            for connection in connections:
                connection.close()
        ordered = sorted(latencies)
        return LoneLatency(
            requests=len(ordered), accepted=accepted,
            seconds=round(time.perf_counter() - started, 2),
            p50_ms=round(percentile(ordered, 0.50) / 1e6, 2),
            p99_ms=round(percentile(ordered, 0.99) / 1e6, 2),
            max_ms=round(ordered[-1] / 1e6, 2) if ordered else 0.0,
        )
