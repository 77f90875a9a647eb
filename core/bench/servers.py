"""The bench's server processes: start one, wait until it says it listens, read its CPU
time and memory from /proc, always stop it. Several started alike (routers sharing a store)
are driven as one server."""

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

__all__ = ["DATABASE_LABEL", "WORKER_READY", "Running", "database_server", "memory_mb",
           "process_label", "process_tree", "processes_cpu_s", "start_server", "together"]

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_LISTENING = re.compile(rb"listening on http://(\S+):(\d+)")
WORKER_READY = re.compile(rb"arrears-router worker running")
"""What ``arrears-router worker`` prints once it runs: it listens on no port."""
DATABASE_LABEL = "postgresql"
"""The CPU of a router's PostgreSQL server, beside its own processes'."""


@dataclass(frozen=True)
class Running:
    name: str
    pids: tuple[int, ...]
    """One process, or several started alike that share the load (routers on one store)."""
    ports: tuple[int, ...]
    """Where each listens; the client spreads its connections over them."""
    probe: Probe | None = None
    """Its store, when a turn ends only once its plugins are done with the turn's payments."""
    database: int | None = None
    """The main process of its store's PostgreSQL server, when that runs on this machine:
    the database's work is the router's too, as SQLite's is done in the router's own
    processes."""

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds of each of its processes (:func:`processes_cpu_s`), and of the whole
        database server but the probe's own connection; empty where /proc is unavailable."""
        seconds = processes_cpu_s(self.pids)
        if seconds and self.database is not None:
            probe = self.probe.backend_pid() if self.probe else None
            database = processes_cpu_s((self.database,), exclude=probe)
            if database:
                seconds[DATABASE_LABEL] = sum(database.values())
        return seconds


def together(name: str, members: Sequence[Running]) -> Running:
    """Servers started alike, driven and measured as one."""
    return Running(name, tuple(pid for m in members for pid in m.pids),
                   tuple(port for m in members for port in m.ports))


@contextlib.asynccontextmanager
async def start_server(name: str, command: Sequence[str], log_path: Path, *,
                       ready: re.Pattern[bytes] = _LISTENING) -> AsyncIterator[Running]:
    """Start a server, yield it once it says it listens (or prints ``ready``, which names no
    port); always stop it after."""
    progress(f"starting the {name}")
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        try:
            port = await _wait_ready(name, process, log_path, ready)
            yield Running(name, (process.pid,), () if port is None else (port,))
        finally:
            await _stop(process)


async def _wait_ready(name: str, process: asyncio.subprocess.Process, log_path: Path,
                      ready: re.Pattern[bytes]) -> int | None:
    assert process.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(process.stdout.readline(), remaining)
        except TimeoutError:
            break
        if not line:
            break
        if match := ready.search(line):
            return int(match.group(2)) if ready.groups >= 2 else None
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


def processes_cpu_s(pids: Sequence[int], *, exclude: int | None = None) -> dict[str, float]:
    """User plus system CPU seconds of every thread of each of ``pids`` and of each of their
    descendants (``serve`` runs its engine as a child) but ``exclude``, by what each runs
    (:func:`process_label`, numbered by its root when several roots run alike); empty where
    /proc is unavailable."""
    seconds: dict[str, float] = {}
    roots = []
    for pid in pids:
        try:
            roots.append(process_label(pid))
        except OSError:
            continue
    # Numbered only when they run alike (routers sharing a store), not serve beside a worker.
    numbered = len(set(roots)) < len(roots)
    for number, pid in enumerate(pids, 1):
        for member in process_tree(pid):
            if member == exclude:
                continue
            try:
                stat = Path(f"/proc/{member}/stat").read_text()
                label = process_label(member)
            except OSError:
                continue
            if numbered:
                label = f"{label} #{number}"
            # Fields after the parenthesised command name; utime and stime are the 14th and
            # 15th.
            fields = stat.rsplit(")", 1)[1].split()
            if label in seconds:  # two alike: tell them apart
                label = f"{label} ({member})"
            seconds[label] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return seconds


def database_server(backend_pid: int | None) -> int | None:
    """The main process of the PostgreSQL server whose backend ``backend_pid`` is, when it
    runs on this machine (and in this PID namespace); None otherwise."""
    if backend_pid is None:
        return None
    try:
        parent = int(Path(f"/proc/{backend_pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        names = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in (backend_pid, parent)]
    except (OSError, IndexError, ValueError):
        return None
    # The same pid on this machine may be another program, if the server is elsewhere.
    return parent if names == ["postgres", "postgres"] else None


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
