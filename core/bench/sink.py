"""A sink for the bench's HTTP plugins: answers every request 200 with one fixed JSON body
and counts them by their idempotency header, so the bench can check that each payment made
exactly one call to it.

One process per plugin, started by the bench as ``python -m arrears_router.bench.sink
--port 0 --key-header Idempotency-Key --reply '{"ok":true}'``. A raw asyncio protocol on
uvloop with httptools' parser, the least work an HTTP server can do in Python: on two cores
the sinks share the machine with the router, and a heavier server would take its CPU.
``GET /stats`` answers the counts (not counted itself).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from typing import cast

import httptools
import msgspec

__all__ = ["STATS_PATH", "SinkStats", "main"]

STATS_PATH = b"/stats"


class SinkStats(msgspec.Struct, frozen=True, kw_only=True):
    requests: int
    """Requests answered, ``GET /stats`` aside."""
    keys: int
    """Distinct values of the key header among them."""
    repeated: int
    """Requests whose key an earlier one had already brought: a payment called twice."""
    unkeyed: int
    """Requests without the key header."""


class _Counts:
    def __init__(self, key_header: bytes) -> None:
        self.key_header = key_header.lower()
        self.requests = 0
        self.unkeyed = 0
        self.keys: Counter[bytes] = Counter()

    def stats(self) -> SinkStats:
        keyed = self.requests - self.unkeyed
        return SinkStats(requests=self.requests, keys=len(self.keys),
                         repeated=keyed - len(self.keys), unkeyed=self.unkeyed)


def _response(body: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


class _Sink(asyncio.Protocol):
    """One client connection: any number of requests, each answered once it is whole."""

    def __init__(self, counts: _Counts, reply: bytes) -> None:
        self._counts = counts
        self._reply = reply
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._key: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self._url, self._key = b"", None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == self._counts.key_header:
            self._key = value

    def on_message_complete(self) -> None:
        assert self._transport is not None
        if self._url == STATS_PATH:
            self._transport.write(_response(msgspec.json.encode(self._counts.stats())))
        else:
            counts = self._counts
            counts.requests += 1
            if self._key is None:
                counts.unkeyed += 1
            else:
                counts.keys[self._key] += 1
            self._transport.write(self._reply)
        if not self._parser.should_keep_alive():
            self._transport.close()


async def _serve(host: str, port: int, counts: _Counts, reply: bytes) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Sink(counts, reply), host, port, backlog=1024)
    stopping = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    bound = server.sockets[0].getsockname()
    # The line the bench waits for (bench.servers), as the router and the ceiling print it.
    print(f"listening on http://{bound[0]}:{bound[1]}", flush=True)
    async with server:
        await stopping.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m arrears_router.bench.sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key-header", required=True,
                        help="the header each payment's calls carry one value of")
    parser.add_argument("--reply", required=True, help="the JSON body of every answer")
    args = parser.parse_args(argv)
    counts = _Counts(args.key_header.encode())
    reply = _response(args.reply.encode())
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve(args.host, args.port, counts, reply))
    else:
        uvloop.run(_serve(args.host, args.port, counts, reply))
    sys.exit(0)


if __name__ == "__main__":
    main()
