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

from arrears_router.bench.report import progress
from arrears_router.bench.store import Probe

__all__ = ["Running", "memory_mb", "process_label", "process_tree", "processes_cpu_s",
           "start_server"]

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


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``serve`` runs its engine as a child), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(children.get(current, ()))
    return tree


def processes_cpu_s(pid: int) -> dict[str, float]:
    """User plus system CPU seconds of every thread of ``pid`` and of each of its descendants
    (``serve`` runs its engine as a child), by what each runs (:func:`process_label`); empty
    where /proc is unavailable."""
    seconds: dict[str, float] = {}
    for member in process_tree(pid):
        try:
            stat = Path(f"/proc/{member}/stat").read_text()
            label = process_label(member)
        except OSError:
            continue
        # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        fields = stat.rsplit(")", 1)[1].split()
        if label in seconds:  # two alike: tell them apart
            label = f"{label} ({member})"
        seconds[label] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return seconds


def process_label(pid: int) -> str:
    """What a process runs, read from its command line: the module after ``-m`` and the
    command after that (``arrears_router serve``, ``arrears_router.bench.ceiling``), else its
    program's name."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    if "-m" in argv[:-2]:
        module, *rest = argv[argv.index("-m") + 1:]
        command = rest[0] if rest and rest[0] and not rest[0].startswith("-") else ""
        return f"{module} {command}".strip()
    return Path(argv[0]).name


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
    """Resident and peak resident memory (VmRSS, VmHWM) in MB of ``pid`` and its
    descendants, added up (so the peak is an upper bound), from /proc."""
    sizes = {"VmRSS": 0.0, "VmHWM": 0.0}
    seen = False
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            key, _, value = line.partition(":")
            if key in sizes:
                sizes[key] += int(value.split()[0]) / 1024  # kB
                seen = True
    if not seen:
        return None
    return round(sizes["VmRSS"], 1), round(sizes["VmHWM"], 1)
