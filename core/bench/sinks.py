"""The sinks of one router run: a ``bench.sink`` process for each of its plugins that calls
out, started before the router's config is written (it names their ports), and the check
that every payment reached each of them exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import msgspec

from arrears_router.bench.client import HOST, parse_head
from arrears_router.bench.plugin_sets import SINKS, PluginSet
from arrears_router.bench.report import Calls
from arrears_router.bench.servers import Running, processes_cpu_s, start_server
from arrears_router.bench.sink import STATS_PATH, SinkStats
from arrears_router.serve import module_command

__all__ = ["Sinks", "start_sinks"]


class Sinks:
    """Running sinks by plugin (none for no-op plugins)."""

    def __init__(self, running: Mapping[str, Running]) -> None:
        self._running = dict(running)

    @property
    def ports(self) -> dict[str, int]:
        return {name: sink.ports[0] for name, sink in self._running.items()}

    def cpu_s(self) -> float:
        """CPU seconds of all of them: taken from the router's two cores, so reported."""
        return sum(sum(processes_cpu_s(sink.pids).values()) for sink in self._running.values())

    async def calls(self, expected: int) -> tuple[Calls, ...]:
        """Each sink's count against ``expected`` payments, one call each."""
        found = []
        for name, sink in self._running.items():
            stats = await _stats(sink.ports[0])
            found.append(Calls(
                plugin=name, expected=expected, requests=stats.requests, keys=stats.keys,
                repeated=stats.repeated, unkeyed=stats.unkeyed,
                ok=stats.requests == stats.keys == expected and not stats.unkeyed))
        return tuple(found)


@contextlib.asynccontextmanager
async def start_sinks(plugins: PluginSet, log_dir: Path) -> AsyncIterator[Sinks]:
    async with contextlib.AsyncExitStack() as stack:
        running = {}
        for name in plugins.calls:
            spec = SINKS[name]
            command = module_command("arrears_router.bench.sink", "--host", HOST, "--port", "0",
                                     "--key-header", spec.key_header, "--reply", spec.reply)
            running[name] = await stack.enter_async_context(
                start_server(f"{name} sink", command, log_dir / f"sink-{name}.log"))
        yield Sinks(running)


async def _stats(port: int) -> SinkStats:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                     % (STATS_PATH, HOST.encode()))
        head = await reader.readuntil(b"\r\n\r\n")
        _, length = parse_head(head[:-4])
        return msgspec.json.decode(await reader.readexactly(length), type=SinkStats)
    finally:
        writer.close()
