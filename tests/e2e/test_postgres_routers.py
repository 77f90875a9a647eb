"""PostgreSQL, end to end: routers and a worker as real processes on one shared store.

Two ``serve`` and one ``worker`` share a schema of their own (:func:`postgres_schema`);
notifications go over HTTP on loopback; what was stored and delivered is read back from the
database. The plugin is :class:`Receipts`, defined here and loaded by the routers with
``use = "tests.e2e.test_postgres_routers:Receipts"``: its effect is a file created
exclusively per idempotency key (so a second delivery of a payment changes nothing and
effects can be counted), and every call it gets is a line in a log (pid, payment, attempt,
time), so who ran what, and when, can be told afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import psycopg

from arrears_router import ArrearsPayment, Delivery, hookimpl
from arrears_router.config import load_config
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import RouterProcess, cli, postgres_schema, wait_until, write_config

from .burst import Burst

Start = Callable[..., RouterProcess]

CALLBACK = "/ridecode/arrears"
PLUGIN_USE = "tests.e2e.test_postgres_routers:Receipts"
DEADLINE_S = 30.0
"""A failure bound only: every wait ends as soon as its condition holds."""


# -- the plugin the routers load


def wait_for_file(path: Path) -> None:
    """A plugin's wait for a test to open a gate: the file ``path`` made (up to a minute)."""
    wait_until(path.exists, f"{path} to exist", 60)


class Receipts:
    """Writes one receipt file per idempotency key, created exclusively: however often a
    payment is delivered, its effect happens once. Each call is also two lines of
    ``calls.log``, ``begin|end PLUGIN PID TRANSACTION_ID ATTEMPT UNIX_TIME``. A call for a
    payment whose id ends with ``slow_suffix`` (any, by default) takes ``slow`` seconds
    after its effect, so a process can be killed with calls in flight whose effect happened;
    with a ``gate``, every call waits after its effect until that file exists."""

    name = "receipts"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        directory: str
        slow_suffix: str = ""
        slow: float = 0.0
        gate: str = ""
        """A file: each call, its effect done, waits for it to exist before it returns."""

    def __init__(self, settings: Settings) -> None:
        self.directory = Path(settings.directory)
        self.settings = settings

    @hookimpl
    def router_started(self) -> None:
        (self.directory / "effects").mkdir(parents=True, exist_ok=True)

    def _log(self, kind: str, payment: ArrearsPayment, delivery: Delivery) -> None:
        with (self.directory / "calls.log").open("a", encoding="utf-8") as calls:
            calls.write(f"{kind} {delivery.plugin} {os.getpid()} {payment.transaction_id}"
                        f" {delivery.attempt} {time.time():.6f}\n")

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        self._log("begin", payment, delivery)
        receipt = self.directory / "effects" / delivery.idempotency_key.replace(":", "_")
        try:
            with receipt.open("x", encoding="utf-8") as file:
                file.write(payment.transaction_id)
            note = "written"
        except FileExistsError:
            note = "already written"
        s = self.settings
        if s.slow and payment.transaction_id.endswith(s.slow_suffix):
            await asyncio.sleep(s.slow)  # in flight, its effect done, its outcome not recorded
        if s.gate:  # held until the test opens the gate (or the call's timeout)
            await asyncio.to_thread(wait_for_file, Path(s.gate))
        self._log("end", payment, delivery)
        return note


class SyncGated:
    """A plain (not async) hook, run on the plugin's own threads: each call writes
    ``begin TRANSACTION_ID`` to ``path``, then waits until the file ``gate`` exists."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        path: str
        gate: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @hookimpl
    def arrears_paid(self, payment: ArrearsPayment) -> None:
        with Path(self.settings.path).open("a", encoding="utf-8") as file:
            file.write(f"begin {payment.transaction_id}\n")
        wait_for_file(Path(self.settings.gate))


@dataclass(frozen=True)
class Call:
    kind: str
    plugin: str
    pid: int
    transaction_id: str
    attempt: int
    at: float


def calls(directory: Path, kind: str = "begin") -> list[Call]:
    """The calls begun (or ended) so far."""
    path = directory / "calls.log"
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        what, plugin, pid, transaction_id, attempt, at = line.split()
        if what == kind:
            found.append(Call(what, plugin, int(pid), transaction_id, int(attempt), float(at)))
    return found


def effects(directory: Path) -> list[str]:
    """The receipt files written: one per (merchant, payment, plugin) that took effect."""
    folder = directory / "effects"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def receipts(directory: Path, **policy: Any) -> dict[str, Any]:
    return {"use": PLUGIN_USE, "directory": str(directory), "backoff": 0.05, **policy}


# -- the store, read straight from PostgreSQL


def stored_ids(url: str) -> list[str]:
    """Every stored payment's transaction_id, one entry per row."""
    with psycopg.connect(url, autocommit=True) as db:
        return [tx for (tx,) in db.execute("SELECT transaction_id FROM events ORDER BY id")]


def delivery_states(url: str, plugin: str) -> dict[str, tuple[str, int]]:
    """``{transaction_id: (status, attempt)}`` of one plugin's deliveries; one per payment."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT e.transaction_id, d.status, d.attempt FROM deliveries d"
            " JOIN events e ON e.id = d.event_id WHERE d.plugin = %s", (plugin,)).fetchall()
    states = {tx: (status, attempt) for tx, status, attempt in rows}
    assert len(states) == len(rows), "a payment has two deliveries to one plugin"
    return states


def all_done(url: str, plugin: str, expected: set[str]) -> bool:
    states = delivery_states(url, plugin)
    return set(states) == expected and all(s == "done" for s, _ in states.values())


# -- a cluster: configs naming one store, and the processes on them


@dataclass
class Cluster:
    url: str
    configs: dict[str, Path]
    """``serve-a``, ``serve-b``, ``worker`` and ``ops`` (the third config, for the CLI only)."""
    serves: list[RouterProcess]
    worker: RouterProcess
    notifier: Notifier

    def callback(self, serve: RouterProcess) -> str:
        return serve.url + CALLBACK


def write_configs(tmp_path: Path, url: str, plugins: dict[str, dict[str, Any]]
                  ) -> dict[str, Path]:
    """One config per process (and ``ops``, the CLI's), each in a folder of its own, all
    naming the same store and plugins."""
    configs = {}
    for name in ("serve-a", "serve-b", "worker", "ops"):
        folder = tmp_path / name
        folder.mkdir()
        configs[name] = write_config(folder / "config.toml", store={"url": url},
                                     plugins=plugins, server={"host": "127.0.0.1", "port": 0})
    return configs


@contextlib.contextmanager
def running_cluster(tmp_path: Path, url: str, plugins: dict[str, dict[str, Any]],
                    start_process: Start) -> Iterator[Cluster]:
    """Two ``serve`` and a ``worker`` on the store at ``url``; all stopped on the way out,
    before the store's schema is dropped."""
    configs = write_configs(tmp_path, url, plugins)
    processes: list[RouterProcess] = []
    try:
        serves = [start_process(configs[name], "serve", "--port", "0")
                  for name in ("serve-a", "serve-b")]
        processes += serves
        worker = start_process(configs["worker"], "worker")
        processes.append(worker)
        yield Cluster(url, configs, serves, worker,
                      Notifier(load_config(configs["ops"]).merchants[0]))
    finally:
        for process in processes:
            process.close()


def engine_of(serve: RouterProcess) -> int:
    """The pid of a ``serve``'s engine process: its one child."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2:].split()
        if int(fields[1]) == serve.pid:
            children.append(int(stat.parent.name))
    assert len(children) == 1, f"serve {serve.pid} has children {children}"
    return children[0]


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie waiting for its reaper."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2] == "Z"


def fire_together(targets: Sequence[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """POST each body to its URL at one moment: a connection each, opened first, then all
    released by one barrier. The replies, in order."""
    connections = []
    for url, _ in targets:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=DEADLINE_S)
        connection.connect()
        connections.append((connection, parts.path))
    barrier = threading.Barrier(len(targets), timeout=DEADLINE_S)  # a bound, never reached

    def send(index: int) -> dict[str, Any]:
        connection, path = connections[index]
        try:
            barrier.wait()
            connection.request("POST", path, body=targets[index][1],
                               headers={"content-type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200, response.status
            reply: dict[str, Any] = json.loads(response.read())
            return reply
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(send, range(len(targets))))


def post(url: str, body: bytes) -> dict[str, Any]:
    response = httpx.post(url, content=body, headers={"content-type": "application/json"},
                          timeout=DEADLINE_S)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def numbered(prefix: str, count: int) -> Iterator[str]:
    return (f"{prefix}{number:08d}" for number in range(count))


# -- 1. two routers and a worker, a kill -9 in the middle of a burst

SENDERS = 8
"""Per router."""
BURST = 300
"""Notifications per router (a bound: the killed one's burst is cut short)."""
KILL_AFTER_ACKS = 80
"""Acks from the router about to be killed: it is killed in the middle of its burst."""
DUPLICATED = 4
COPIES = 10
"""Copies of each duplicated payment sent to each router, all at one moment."""


def test_two_routers_and_a_worker_survive_a_kill_9_mid_burst(
    tmp_path: Path, start_process: Start
) -> None:
    # A short timeout keeps the lease of a delivery caught in the kill short: it is claimed
    # again 6 s after the kill (timeout + the lease's 5 s grace). One payment in ten is slow
    # to deliver, so that the kill finds calls in flight.
    plugin = receipts(tmp_path, timeout=1, slow_suffix="7", slow=0.5)
    with (postgres_schema() as url,
          running_cluster(tmp_path, url, {"receipts": plugin}, start_process) as cluster):
        doomed, survivor = cluster.serves
        engine = engine_of(doomed)
        body = lambda tx: cluster.notifier.notification(sample_payload(tx))  # noqa: E731
        bursts = [Burst(url=cluster.callback(serve), ids=numbered(prefix, BURST),
                        body_for=body, timeout_s=DEADLINE_S)
                  for serve, prefix in ((doomed, "PG-A-"), (survivor, "PG-B-"))]
        for burst in bursts:
            burst.start(SENDERS)
        cut, steady = bursts

        def in_flight() -> set[tuple[str, int]]:
            """The engine's calls begun and not ended: (transaction_id, attempt)."""
            return ({(c.transaction_id, c.attempt) for c in calls(tmp_path, "begin")
                     if c.pid == engine}
                    - {(c.transaction_id, c.attempt) for c in calls(tmp_path, "end")
                       if c.pid == engine})

        wait_until(lambda: (len(cut.acked) >= KILL_AFTER_ACKS and in_flight())
                   or cut.refused or cut.early_breaks or cut.join(0),
                   "acks, and the engine in the middle of a delivery")
        assert len(cut.acked) >= KILL_AFTER_ACKS, (
            f"{len(cut.acked)} acks; failures: {(cut.refused + cut.early_breaks)[:5]}")
        cut.going_away()
        doomed.kill9()  # the HTTP process, then its engine: no shutdown code runs in either
        os.kill(engine, signal.SIGKILL)
        wait_until(lambda: gone(engine), "the killed engine gone")
        caught = in_flight()
        assert caught, "no delivery was in flight when the engine was killed"
        assert cut.join(DEADLINE_S) and steady.join(DEADLINE_S), "a sender hangs"

        assert cut.refused == [] and cut.early_breaks == []
        assert steady.refused == [] and steady.early_breaks == [], (
            steady.refused[:3], steady.early_breaks[:3])
        assert len(cut.sent) < BURST, "the kill came after the burst: it cut nothing short"
        assert set(steady.acked) == steady.sent  # the other router never noticed
        acked = set(cut.acked) | set(steady.acked)
        sent = cut.sent | steady.sent

        stored = stored_ids(url)  # before anything is sent again
        assert len(stored) == len(set(stored)), "a payment is stored twice"
        assert acked <= set(stored), f"lost: {sorted(acked - set(stored))[:5]}"
        assert set(stored) <= sent

        doomed.start()  # the same config, the same store
        # Copies of one payment (re-encrypted: a fresh IV and nonce each) at both routers at
        # one moment: all answered 0, stored once.
        duplicated = [f"PG-DUP-{n}" for n in range(DUPLICATED)]
        copies = [(cluster.callback(serve), body(tx))
                  for tx in duplicated for _ in range(COPIES) for serve in cluster.serves]
        replies = fire_together(copies)
        assert [r["errcode"] for r in replies] == [0] * len(copies), replies

        # WeChat sends again what it got no errcode 0 for; each lands exactly once.
        for transaction_id in sorted(sent - acked):
            assert post(cluster.callback(doomed), body(transaction_id))["errcode"] == 0

        everything = sent | set(duplicated)
        stored = stored_ids(url)
        assert sorted(stored) == sorted(everything), "not every payment stored exactly once"
        # Every delivery done, those caught in the kill too, once their lease lapsed; one
        # effect each, however many times a delivery ran.
        wait_until(lambda: all_done(url, "receipts", everything), "every delivery done")
        assert effects(tmp_path) == sorted(f"{cluster.notifier.mch_id}_{tx}_receipts"
                                           for tx in everything)
        ran = calls(tmp_path)
        assert {c.transaction_id for c in ran} == everything
        for transaction_id, attempt in caught:  # run again, by a live process, no new effect
            assert [c for c in ran if c.transaction_id == transaction_id
                    and c.attempt > attempt and c.pid != engine], transaction_id
        assert len({c.pid for c in ran}) >= 3, "not delivered by several processes"
        assert not any(p.logged("Traceback") for p in (survivor, cluster.worker)), (
            survivor.log_text()[-3000:], cluster.worker.log_text()[-3000:])


# -- 2. a mode changed from a third config, obeyed by every process within a second

PAUSED_LINE = "plugin held: enabled -> paused by ops-third"
ENABLED_LINE = "plugin held: paused -> enabled by ops-third"
BEFORE = 30
"""Payments per router before the pause: held runs 2 at a time in each process, at its
gate, and the rest wait."""
ROUND = 30
"""Payments per router in each round after it."""
MAX_ROUNDS = 10
"""A failure bound: rounds are sent until the worker has run one of them for the probe."""
HEARD_BY_S = 1.0


def _send_all(cluster: Cluster, ids: Sequence[str]) -> None:
    """Each id to one router, alternately, from several threads; every one acked."""
    def send(index: int) -> None:
        serve = cluster.serves[index % 2]
        tx = ids[index]
        reply = post(cluster.callback(serve), cluster.notifier.notification(sample_payload(tx)))
        assert reply["errcode"] == 0, (tx, reply)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, range(len(ids))))


def _heard_late(processes: Sequence[RouterProcess], line: str, since: float
                ) -> dict[str, float]:
    """Wait until every process's log shows ``line``; those that showed it more than
    :data:`HEARD_BY_S` after ``since`` (a time.time()), with how long after (to the 20 ms
    poll)."""
    heard: dict[int, float] = {}

    def all_heard() -> bool:
        for index, process in enumerate(processes):
            if index not in heard and process.logged(line):
                heard[index] = time.time() - since
        return len(heard) == len(processes)

    wait_until(all_heard, f"every process to log {line!r}", 5)
    return {f"{processes[i].command} #{i}": round(after, 3) for i, after in heard.items()
            if after > HEARD_BY_S}


def test_a_mode_changed_from_a_third_config_is_obeyed_by_all_within_a_second(
    tmp_path: Path, start_process: Start
) -> None:
    held_dir, probe_dir = tmp_path / "held", tmp_path / "probe"
    gate = tmp_path / "gate"
    # Held's calls wait at a gate, so that it has a backlog when it is paused. The probe runs
    # one call at a time in each process, so that under a burst the routers leave some of
    # its deliveries to the worker's claims.
    plugins = {"held": receipts(held_dir, concurrency=2, gate=str(gate)),
               "probe": receipts(probe_dir, concurrency=1)}
    with (postgres_schema() as url,
          running_cluster(tmp_path, url, plugins, start_process) as cluster):
        processes = [*cluster.serves, cluster.worker]
        ids = (f"PG-MODE-{n:05d}" for n in itertools.count())
        before = [next(ids) for _ in range(2 * BEFORE)]
        _send_all(cluster, before)
        # Two at a time in each of the three processes (a poll's claim racing a payment's
        # claim at birth has been seen to start a third), the rest waiting behind them.
        wait_until(lambda: len(calls(held_dir)) >= 6, "held's calls in flight in each process")

        ops = cluster.configs["ops"]
        cli("plugins", "pause", "held", "--by", "ops-third", config=ops, check=True)
        paused_at = time.time()
        gate.touch()  # the calls in flight end, and leave room for more: none may begin
        with ThreadPoolExecutor(max_workers=1) as background:
            # Payments in the very second the routers have to obey, and after it, until the
            # worker too has claimed some of the probe's: every process has then claimed
            # after the change, and passed over held.
            first = [next(ids) for _ in range(2 * ROUND)]
            sending = background.submit(_send_all, cluster, first)
            late = _heard_late(processes, PAUSED_LINE, paused_at)
            sending.result()
        assert not late, f"heard the pause over {HEARD_BY_S} s after the command returned: {late}"
        after = first
        worker_pid = cluster.worker.pid
        for _ in range(MAX_ROUNDS):
            sent = set(before) | set(after)
            wait_until(lambda sent=sent: all_done(url, "probe", sent),
                       "the probe's deliveries done")
            if any(c.pid == worker_pid for c in calls(probe_dir) if c.transaction_id in after):
                break
            batch = [next(ids) for _ in range(2 * ROUND)]
            after += batch
            _send_all(cluster, batch)
        else:
            raise AssertionError(f"the worker ran none of {len(after)} probe deliveries")
        probe_pids = {c.pid for c in calls(probe_dir) if c.transaction_id in after}
        assert len(probe_pids) == 3, probe_pids  # both routers' engines and the worker

        held_calls = calls(held_dir)
        started_late = [c for c in held_calls if c.at > paused_at + HEARD_BY_S]
        assert started_late == [], f"held calls begun over 1 s after the pause: {started_late}"
        assert not [c for c in held_calls if c.transaction_id in after]
        states = delivery_states(url, "held")
        assert {states[tx] for tx in after} == {("pending", 0)}
        backlog = {tx for tx in before if states[tx] != ("done", 1)}
        assert backlog, "held had delivered everything before the pause: nothing was held"
        assert {states[tx] for tx in backlog} == {("pending", 0)}  # never claimed since

        cli("plugins", "enable", "held", "--by", "ops-third", config=ops, check=True)
        enabled_at = time.time()
        late = _heard_late(processes, ENABLED_LINE, enabled_at)
        assert not late, f"heard the enable over {HEARD_BY_S} s after the command returned: {late}"
        everything = set(before) | set(after)
        wait_until(lambda: all_done(url, "held", everything), "the held deliveries run")
        assert len(effects(held_dir)) == len(everything)
        assert len(effects(probe_dir)) == len(everything)


# -- 4. routers started together on an empty schema; `migrate --check`


def test_migrate_check_says_whether_the_schema_is_current(tmp_path: Path) -> None:
    with postgres_schema() as url:
        config = write_config(tmp_path / "config.toml", store={"url": url})
        empty = cli("migrate", "--check", config=config)
        assert empty.returncode == 1, (empty.stdout, empty.stderr)
        assert "needs migrating" in empty.stdout
        migrated = cli("migrate", config=config, check=True)
        assert "migrated from schema version 0 to" in migrated.stdout
        current = cli("migrate", "--check", config=config)
        assert current.returncode == 0, (current.stdout, current.stderr)
        assert "store is current" in current.stdout
        again = cli("migrate", config=config, check=True)  # nothing to do, said so
        assert "store is current" in again.stdout


def test_two_routers_started_at_once_on_an_empty_schema_both_come_up(
    tmp_path: Path, start_process: Start
) -> None:
    with postgres_schema() as url:
        configs = write_configs(tmp_path, url, {"receipts": receipts(tmp_path)})
        assert cli("migrate", "--check", config=configs["ops"]).returncode == 1
        routers = [RouterProcess(configs[name], "serve", "--port", "0")
                   for name in ("serve-a", "serve-b")]
        together = threading.Barrier(len(routers), timeout=DEADLINE_S)
        failures: list[BaseException] = []

        def start(router: RouterProcess) -> None:
            together.wait()
            try:
                router.start()
            except BaseException as exc:  # reported below, with its output
                failures.append(exc)

        threads = [threading.Thread(target=start, args=(r,)) for r in routers]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(DEADLINE_S * 2)
            assert failures == []
            current = cli("migrate", "--check", config=configs["ops"])
            assert current.returncode == 0, (current.stdout, current.stderr)
            notifier = Notifier(load_config(configs["ops"]).merchants[0])
            for index, router in enumerate(routers):
                assert httpx.get(router.url + "/readyz", timeout=DEADLINE_S).status_code == 200
                body = notifier.notification(sample_payload(f"PG-START-{index}"))
                assert post(router.url + CALLBACK, body)["errcode"] == 0
            assert sorted(stored_ids(url)) == ["PG-START-0", "PG-START-1"]
            wait_until(lambda: all_done(url, "receipts", {"PG-START-0", "PG-START-1"}),
                       "both payments delivered")
            with psycopg.connect(url, autocommit=True) as db:
                versions = db.execute("SELECT name, version FROM schema_versions").fetchall()
            assert len(versions) == 1, versions  # one row: migrated once, not twice
            for router in routers:
                assert not router.logged("Traceback"), router.log_text()
        finally:
            for router in routers:
                router.close()


# -- a plugin's own threads, in a worker that claims several deliveries at once


def test_a_worker_runs_a_sync_plugins_claimed_deliveries_concurrency_at_a_time(
    tmp_path: Path, start_process: Start
) -> None:
    """A sync plugin of concurrency 2, and a worker whose first claim takes two of its
    deliveries: both calls run at once, each on a thread of the plugin's."""
    log, gate = tmp_path / "calls.log", tmp_path / "gate"
    plugins = {"gated": {"use": "tests.e2e.test_postgres_routers:SyncGated", "path": str(log),
                         "gate": str(gate), "concurrency": 2, "timeout": 10}}
    with postgres_schema() as url:
        configs = write_configs(tmp_path, url, plugins)
        serve = start_process(configs["serve-a"], "serve", "--port", "0", "--no-dispatch")
        worker = None
        try:
            notifier = Notifier(load_config(configs["ops"]).merchants[0])
            for tx in ("PG-THREAD-1", "PG-THREAD-2"):
                assert post(serve.url + CALLBACK,
                            notifier.notification(sample_payload(tx)))["errcode"] == 0
            worker = start_process(configs["worker"], "worker")  # claims both at once

            def began() -> list[str]:
                return log.read_text().split() if log.exists() else []

            try:
                wait_until(lambda: len(began()) == 4, "both calls running at once", 5)
            finally:
                gate.touch()
            wait_until(lambda: all_done(url, "gated", {"PG-THREAD-1", "PG-THREAD-2"}),
                       "both delivered")
        finally:
            for process in (serve, worker):
                if process is not None:
                    process.close()
