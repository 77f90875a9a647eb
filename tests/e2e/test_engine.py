"""``serve``'s two processes, seen from outside: the HTTP process, its engine child, signals.

The engine is found as the one child of the ``serve`` process in ``/proc`` (its ppid), never
guessed. Every wait is for a condition, against a deadline; nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from arrears_router.serve.server import bind
from arrears_router.wire.notifier import sample_payload
from tests.harness import RouterProcess, wait_until

from .burst import Burst
from .conftest import Router

DEADLINE_S = 15.0
"""A failure bound only: each wait ends as soon as its condition holds."""
STORE_UNAVAILABLE = {"errcode": 50001, "errmsg": "store unavailable, retry later"}


# -- processes, as /proc shows them


@dataclass(frozen=True)
class Proc:
    """One process: ``pid`` and ``start`` (its start time) identify it even if the pid is reused."""

    pid: int
    ppid: int
    pgrp: int
    state: str
    start: int


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # Fields after "(comm)", which may itself hold spaces or parentheses: state, ppid, pgrp, ...
    # starttime is the 22nd field of the line, the 20th after comm.
    fields = stat[stat.rindex(")") + 2 :].split()
    return Proc(pid=pid, state=fields[0], ppid=int(fields[1]), pgrp=int(fields[2]),
                start=int(fields[19]))


def running(process: Proc) -> bool:
    """Still this process and not exited (a zombie, waiting for its parent's wait(), has)."""
    now = read_proc(process.pid)
    return now is not None and now.start == process.start and now.state not in ("Z", "X")


def same(one: Proc, other: Proc) -> bool:
    return (one.pid, one.start) == (other.pid, other.start)


def reaped(process: Proc) -> bool:
    """Gone from the process table: exited, and waited for by its parent."""
    now = read_proc(process.pid)
    return now is None or now.start != process.start


def children(pid: int) -> list[Proc]:
    """The processes whose parent is ``pid`` (zombies included)."""
    found = []
    for entry in Path("/proc").iterdir():
        proc = read_proc(int(entry.name)) if entry.name.isdigit() else None
        if proc is not None and proc.ppid == pid:
            found.append(proc)
    return found


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def assert_is_engine(router: Router, proc: Proc) -> None:
    args = command_line(proc.pid)
    config = str(router.config_path.resolve())
    # -P: the working directory never shadows the installed package
    assert args[1:6] == ["-P", "-m", "arrears_router.serve.engine_child", "--config", config], args
    assert args[6] == "--fd" and args[7].isdigit(), args
    assert len(args) == 8, args  # no --no-dispatch: serve was started without it


def the_engine(router: Router) -> Proc:
    """serve's only child, which must be its engine."""
    found = children(router.server.pid)
    assert len(found) == 1, [command_line(proc.pid) for proc in found]
    (engine,) = found
    assert running(engine), engine
    assert_is_engine(router, engine)
    return engine


# -- notifications


def notification(router: Router, transaction_id: str) -> bytes:
    return router.hmac.notification(sample_payload(transaction_id))


def nonce_of(body: bytes) -> str:
    nonce: str = json.loads(body)["nonce_str"]
    return nonce


def stored_counts(router: Router) -> Counter[str]:
    """How many times each transaction_id is stored (the CLI, on the same store)."""
    return Counter(event["payment"]["transaction_id"] for event in router.events(limit=100_000))


def readyz_status(router: Router) -> int:
    response = router.http.get(router.base_url + "/readyz")
    if response.status_code == 503:
        assert response.json()["errcode"] == 50001, response.text
    return response.status_code


BURST_SENDERS = 8
BURST_LIMIT = 5000


def start_burst(router: Router, url: str, prefix: str) -> Burst:
    """Distinct notifications, ids ``prefix`` and a number, posted until serve goes away."""
    burst = Burst(
        url=url,
        ids=(f"{prefix}{number:06d}" for number in range(BURST_LIMIT)),
        body_for=lambda transaction_id: notification(router, transaction_id),
        timeout_s=DEADLINE_S,
    )
    burst.start(BURST_SENDERS)
    return burst


def wait_for_acks(burst: Burst, count: int) -> None:
    enough = burst.wait_for_acks(count, DEADLINE_S)
    assert burst.refused == [], burst.refused[:5]
    assert enough, (f"{len(burst.acked)} of {count} notifications acknowledged: every sender "
                    f"stopped, or {DEADLINE_S} s passed")


def join_burst(burst: Burst) -> None:
    assert burst.join(DEADLINE_S), "a sender hangs"
    assert burst.refused == [], burst.refused[:5]
    assert len(burst.sent) < BURST_LIMIT, "the burst ran out before the server went away"


def assert_acked_stored_once(router: Router, burst: Burst) -> None:
    """Every acknowledged payment is stored exactly once, and nothing unsent is."""
    counts = stored_counts(router)
    assert len(burst.acked) > 0
    lost = sorted(set(burst.acked) - set(counts))
    assert lost == [], f"{len(lost)} acknowledged payments lost: {lost[:5]}"
    assert [tx for tx, n in counts.items() if n != 1] == []
    assert set(counts) <= burst.sent
    print(f"{len(burst.sent)} sent, {len(burst.acked)} acked, {len(counts)} stored")


# -- one serve, one engine


def test_serve_runs_exactly_one_engine_child_that_stores_what_is_acknowledged(
    router: Router,
) -> None:
    engine = the_engine(router)
    serve = read_proc(router.server.pid)
    assert serve is not None
    assert engine.pgrp == serve.pgrp

    body = notification(router, "TX-ENGINE-1")
    assert router.post(body) == {"errcode": 0, "errmsg": "ok", "nonce_str": nonce_of(body)}

    (event,) = router.event("TX-ENGINE-1")
    assert event["payment"]["transaction_id"] == "TX-ENGINE-1"
    assert event["payment"]["mch_id"] == router.hmac.mch_id
    assert same(the_engine(router), engine)  # still the same one


def test_a_killed_engine_is_replaced_and_a_50001_retry_is_stored_exactly_once(
    router: Router,
) -> None:
    before = notification(router, "TX-BEFORE")
    assert router.post(before)["errcode"] == 0
    old = the_engine(router)

    os.kill(old.pid, signal.SIGKILL)

    wait_until(lambda: readyz_status(router) == 503, "/readyz says 503 while the engine is down")
    # WeChat keeps sending meanwhile: each gets 50001 with its nonce, or 0 once the engine is
    # back; the restart pause makes the first one a 50001, which the loop waits for anyway.
    acked_meanwhile: list[str] = []
    refused: list[tuple[str, bytes]] = []

    def send_until_refused() -> bool:
        transaction_id = f"TX-DOWN-{len(acked_meanwhile)}"
        body = notification(router, transaction_id)
        reply = router.post(body)
        if reply["errcode"] == 0:
            acked_meanwhile.append(transaction_id)
            return False
        assert reply == {**STORE_UNAVAILABLE, "nonce_str": nonce_of(body)}
        refused.append((transaction_id, body))
        return True

    wait_until(send_until_refused, "a notification answered 50001 while the engine is down")
    ((down_tx, down_body),) = refused

    # (a) a new engine, another process, replaces the killed one, which serve has reaped.
    serve_pid = old.ppid
    new = wait_until(
        lambda: next((child for child in children(serve_pid)
                      if child.pid != old.pid and running(child)), None),
        "a new engine child of serve",
    )
    assert new is not None
    assert_is_engine(router, new)
    wait_until(lambda: reaped(old), "the killed engine reaped by serve (no zombie left)")
    # (b) ready again
    wait_until(lambda: readyz_status(router) == 200, "/readyz back to 200")
    assert same(the_engine(router), new)

    # (c) a notification sent now is acknowledged and stored
    after = notification(router, "TX-AFTER")
    assert router.post(after) == {"errcode": 0, "errmsg": "ok", "nonce_str": nonce_of(after)}

    # (d) WeChat's retry of the refused one: stored now ("ok", not "already stored": the 50001
    # kept nothing), and a second retry finds it.
    assert router.post(down_body) == {"errcode": 0, "errmsg": "ok",
                                      "nonce_str": nonce_of(down_body)}
    assert router.post(down_body) == {"errcode": 0, "errmsg": "ok: already stored",
                                      "nonce_str": nonce_of(down_body)}

    counts = stored_counts(router)
    expected = {"TX-BEFORE": 1, "TX-AFTER": 1, down_tx: 1,
                **dict.fromkeys(acked_meanwhile, 1)}
    assert counts == expected


# -- serve stopped: the engine goes with it


def test_sigterm_to_serve_exits_0_and_its_engine_too_keeping_every_ack(router: Router) -> None:
    engine = the_engine(router)
    burst = start_burst(router, router.callback_url, "TX-TERM-")
    wait_for_acks(burst, 30)

    assert router.stop() == 0  # SIGTERM to serve alone, mid-burst

    join_burst(burst)
    wait_until(lambda: not running(engine), "the engine exits after serve's graceful stop")
    assert_acked_stored_once(router, burst)


def test_kill_9_of_serve_the_orphaned_engine_exits_and_a_new_serve_sees_every_ack(
    router: Router,
) -> None:
    engine = the_engine(router)
    burst = start_burst(router, router.callback_url, "TX-K9-")
    wait_for_acks(burst, 30)

    router.kill9()  # the HTTP process only

    join_burst(burst)
    wait_until(lambda: not running(engine), "the orphaned engine exits on its own")

    router.start()  # same config, same store
    new_engine = the_engine(router)
    assert new_engine.pid != engine.pid
    assert_acked_stored_once(router, burst)
    for transaction_id, body in burst.acked.items():  # WeChat's retries: the new serve has them
        reply = router.post(body)
        assert reply == {"errcode": 0, "errmsg": "ok: already stored",
                         "nonce_str": nonce_of(body)}, transaction_id


# -- Ctrl-C: SIGINT to the whole process group, as a terminal sends it


def test_ctrl_c_to_the_process_group_stops_both_and_loses_no_ack(router: Router) -> None:
    assert router.stop() == 0  # the fixture's serve; this test starts its own, in a new session
    # serve as a terminal's foreground job: its own process group, for the group signal
    serve = RouterProcess(router.config_path, "serve", "--port", "0", own_session=True)
    try:
        serve.start()
        (engine,) = children(serve.pid)
        assert command_line(engine.pid)[3] == "arrears_router.serve.engine_child"
        assert engine.pgrp == serve.pid  # one group: a Ctrl-C reaches both

        burst = start_burst(router, serve.url + router.config.server.callback_path, "TX-INT-")
        wait_for_acks(burst, 30)
        serve.signal_group(signal.SIGINT)  # what the terminal does on Ctrl-C

        code = serve.wait(DEADLINE_S)
        join_burst(burst)
        wait_until(lambda: not running(engine), "the engine exits after Ctrl-C")
    finally:
        serve.close()
    log = serve.log_text()
    assert code == 0, log  # a graceful stop on Ctrl-C is a success, as on SIGTERM
    assert "Traceback" not in log, log
    assert "Application shutdown complete" in log, log  # a graceful stop, not a crash
    assert_acked_stored_once(router, burst)


# -- the engine must not inherit serve's listening socket (uvloop's subprocess_exec ignores
# close_fds, so only a non-inheritable socket stays out of the child)


def test_a_dead_serves_port_is_not_held_by_its_still_busy_engine(router: Router) -> None:
    engine = the_engine(router)
    parts = urlsplit(router.base_url)
    assert parts.hostname is not None and parts.port is not None
    os.kill(engine.pid, signal.SIGSTOP)  # an engine still finishing a slow delivery
    try:
        router.kill9()
        try:
            sock = bind(parts.hostname, parts.port)  # what a restarted serve does
        except OSError as exc:
            raise AssertionError(f"serve is dead, yet its port is held: {exc}") from None
        sock.close()
    finally:
        os.kill(engine.pid, signal.SIGCONT)
        wait_until(lambda: not running(engine), "the orphaned engine exits once resumed")
