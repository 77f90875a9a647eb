"""PostgreSQL faults under the routers' feet: their connections terminated by the server
(``pg_terminate_backend``, as a failover or an operator would) in the middle of a burst.

While it lasts a notification may be answered 50001 (WeChat sends it again), never left
hanging past WeChat's 5 s; the routers and the worker recover on their own, with no restart,
and every payment acknowledged is stored, once, and delivered.

Only this test's processes' connections are terminated: they are found by their client
ports (the sockets their processes hold, read from ``/proc``), so other users of the same
database are left alone.
"""

from __future__ import annotations

import ast
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

from arrears_router.wire.notifier import sample_payload
from tests.harness import POSTGRES_ENV, RouterProcess, postgres_schema, wait_until

from .burst import Burst
from .test_postgres_routers import (
    all_done,
    calls,
    effects,
    post,
    receipts,
    running_cluster,
    stored_ids,
)

Start = Callable[..., RouterProcess]

WECHAT_TIMEOUT_S = 5.0
"""WeChat waits this long for a reply; so does each sender here."""
SENDERS = 8
"""Per router."""
MAX_NOTIFICATIONS = 400
"""Per router: a bound; the burst is stopped once the routers are seen to recover."""
TERMINATIONS = 4
ACKS_BETWEEN = 60
"""Acks (from both routers) awaited before each termination, and after the last one: the
routers recover, with no restart, while the burst lasts."""
DEADLINE_S = 30.0


def process_tree(roots: Iterable[int]) -> set[int]:
    """``roots`` and every process descended from them (a ``serve``'s engine)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
    tree = set(roots)
    while grown := {pid for pid, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    return tree


def client_ports(pids: Iterable[int], server_port: int) -> set[int]:
    """The local ports of the TCP connections to ``server_port`` that ``pids`` hold."""
    inodes = set()
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        inodes |= {int(link[8:-1]) for link in links if link.startswith("socket:[")}
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


def terminate_router_connections(processes: Iterable[RouterProcess]) -> int:
    """``pg_terminate_backend`` every PostgreSQL connection of ``processes`` (and their
    engines); how many were terminated."""
    base = os.environ[POSTGRES_ENV]
    port = int(conninfo_to_dict(base).get("port") or 5432)
    ports = client_ports(process_tree(p.pid for p in processes), port)
    assert ports, "no connection to PostgreSQL found: is it reached over TCP?"
    with psycopg.connect(base, autocommit=True) as db:
        terminated = db.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'arrears-router' AND pid != pg_backend_pid()"
            " AND client_port = ANY(%s)", (sorted(ports),)).fetchone()
    assert terminated is not None
    return int(terminated[0])


def errcode_of(refusal: str) -> int:
    """The errcode of a refusal as :class:`Burst` records it: ``"TX: {reply}"``."""
    _, _, reply = refusal.partition(": ")
    errcode: int = ast.literal_eval(reply)["errcode"]
    return errcode


def test_connections_terminated_mid_burst_answer_50001_and_recover_without_restart(
    tmp_path: Path, start_process: Start
) -> None:
    # A short timeout: a delivery whose outcome was lost with its connection is claimed
    # again 6 s later (timeout + the lease's 5 s grace).
    plugins = {"receipts": receipts(tmp_path, timeout=1)}
    with (postgres_schema() as url,
          running_cluster(tmp_path, url, plugins, start_process) as cluster):
        processes = [*cluster.serves, cluster.worker]
        stop = threading.Event()

        def numbered(prefix: str) -> Iterator[str]:
            for number in range(MAX_NOTIFICATIONS):
                if stop.is_set():
                    return
                yield f"{prefix}{number:08d}"

        bursts = [Burst(url=cluster.callback(serve), ids=numbered(prefix),
                        body_for=lambda tx: cluster.notifier.notification(sample_payload(tx)),
                        timeout_s=WECHAT_TIMEOUT_S)
                  for serve, prefix in zip(cluster.serves, ("PG-T-A-", "PG-T-B-"), strict=True)]
        acks = lambda: sum(len(b.acked) for b in bursts)  # noqa: E731
        running = lambda: not all(b.join(0) for b in bursts)  # noqa: E731
        for burst in bursts:
            burst.start(SENDERS)
        terminated = []
        try:
            # Each termination waits for acks since the one before: the routers are back.
            for round_ in range(TERMINATIONS + 1):
                since = acks()
                wait_until(lambda since=since: acks() >= since + ACKS_BETWEEN or not running(),
                           f"{ACKS_BETWEEN} more acks (round {round_})")
                assert acks() >= since + ACKS_BETWEEN, (
                    f"{acks() - since} acks in round {round_}; the burst ended")
                if round_ < TERMINATIONS:
                    terminated.append(terminate_router_connections(processes))
        finally:
            stop.set()
            assert all(b.join(DEADLINE_S) for b in bursts), "a sender hangs"

        assert all(terminated), terminated
        # None hung past WeChat's timeout, nor saw its connection dropped; every refusal is
        # 50001, which WeChat sends again.
        for burst in bursts:
            assert burst.early_breaks == [], burst.early_breaks[:5]
            assert {errcode_of(r) for r in burst.refused} <= {50001}, burst.refused[:5]
        acked = set().union(*(b.acked for b in bursts))
        sent = set().union(*(b.sent for b in bursts))
        refused = sent - acked

        for serve in cluster.serves:  # ready again, with no restart
            wait_until(lambda s=serve: httpx.get(s.url + "/readyz", timeout=WECHAT_TIMEOUT_S)
                       .status_code == 200, "/readyz 200 again")
        assert all(p.popen is not None and p.popen.poll() is None for p in processes)

        stored = stored_ids(url)
        assert len(stored) == len(set(stored)), "a payment is stored twice"
        assert acked <= set(stored), f"acknowledged, not stored: {sorted(acked - set(stored))[:5]}"
        assert set(stored) <= sent

        # WeChat sends again what it got 50001 for: each lands exactly once.
        for index, transaction_id in enumerate(sorted(refused)):
            serve = cluster.serves[index % 2]
            body = cluster.notifier.notification(sample_payload(transaction_id))
            assert post(cluster.callback(serve), body)["errcode"] == 0
        stored = stored_ids(url)
        assert sorted(stored) == sorted(sent)

        wait_until(lambda: all_done(url, "receipts", sent), "every delivery done")
        assert len(effects(tmp_path)) == len(sent)
        assert {c.transaction_id for c in calls(tmp_path)} == sent
        for process in processes:
            assert process.logged("connected to PostgreSQL again"), process.log_text()[-3000:]
