"""The bench's server processes: start one, wait until it says it listens, read its CPU
time and memory from /proc, always stop it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from core.bench_report import progress
from core.bench_store import Probe

__all__ = ["Running", "memory_mb", "process_cpu_s", "start_server"]

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_LISTENING = re.compile(rb"listening on http://(\S+):(\d+)")


@dataclass(frozen=True)
class Running:
    name: str
    pid: int
    port: int
    probe: Probe | None = None
    """Its store, when a turn ends only once its plugins are done with the turn's payments."""


@contextlib.asynccontextmanager
async def start_server(name: str, command: Sequence[str], log_path: Path) -> AsyncIterator[Running]:
    """Start a server, yield it once it says it listens; always stop it after."""
    progress(f"starting the {name}")
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        try:
            port = await _wait_listening(name, process, log_path)
            yield Running(name, process.pid, port)
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


def process_cpu_s(pid: int) -> float | None:
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


def memory_mb(pid: int) -> tuple[float, float] | None:
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
