"""Hostile input and a stalled engine, against the real ``serve`` processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from arrears_router.wire.notifier import sample_payload
from tests.harness import wait_until

from .conftest import Router, reply_of
from .test_engine import children, the_engine

DEEP = 7_000
"""Deeper than msgspec decodes (its own bound), within the e2e router's 16 KiB body limit."""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("body", [
    b"[" * DEEP + b"]" * DEEP,
    b'{"appid":"wx","mch_id":"m","nonce_str":"n","extra":' + b"[" * DEEP + b"]" * DEEP + b"}",
], ids=["top-level", "in-a-field"])
def test_deeply_nested_json_is_answered_40001_not_500(module_router: Router, body: bytes) -> None:
    reply = module_router.post(body)
    assert reply["errcode"] == 40001
    assert "nested too deeply" in reply["errmsg"] or "invalid request body" in reply["errmsg"]
    # Both processes are still there and answer.
    valid = module_router.hmac.notification(sample_payload("TX-AFTER-DEEP-" + str(len(body))))
    assert module_router.post(valid)["errcode"] == 0


@pytest.fixture
def stopped_engine(router: Router) -> Iterator[int]:
    """The router's engine, stopped as by SIGSTOP (a stuck process), continued at the end."""
    engine = the_engine(router).pid
    os.kill(engine, signal.SIGSTOP)
    try:
        yield engine
    finally:
        os.kill(engine, signal.SIGCONT)


def test_a_stalled_engine_is_answered_for_and_readyz_says_so(
    router: Router, stopped_engine: int
) -> None:
    body = router.hmac.notification(sample_payload("TX-STALLED"))
    reply = router.post(body)
    assert (reply["errcode"], reply["errmsg"]) == (50001, "store unavailable, retry later")
    ready = router.http.get(router.base_url + "/readyz")
    assert ready.status_code == 503
    assert "did not answer within" in ready.json()["errmsg"]
    assert router.server.logged("answered 50001: the engine did not answer within 3 s")

    os.kill(stopped_engine, signal.SIGCONT)
    wait_until(lambda: router.http.get(router.base_url + "/readyz").status_code == 200,
               "the engine ready again once continued")
    # WeChat's retry: the stalled copy may have been committed meanwhile; either way, once.
    assert router.post(body)["errcode"] == 0
    assert len(router.event("TX-STALLED")) == 1


def test_what_waits_for_a_stalled_engine_is_bounded(
    start_router: Callable[..., Router], tmp_path: Path
) -> None:
    router = start_router(max_body_bytes=1_048_576)
    engine = the_engine(router).pid
    http_pid = router.server.pid
    before = rss_kib(http_pid)
    bodies = [router.hmac.notification(sample_payload(f"TX-BIG-{n}"), padding="x" * 1_000_000)
              for n in range(48)]
    os.kill(engine, signal.SIGSTOP)
    try:
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=48)) as client, \
                ThreadPoolExecutor(max_workers=48) as pool:
            replies = list(pool.map(
                lambda body: reply_of(client.post(router.callback_url, content=body)), bodies))
        grown_mib = (rss_kib(http_pid) - before) / 1024
    finally:
        os.kill(engine, signal.SIGCONT)
    assert {reply["errcode"] for reply in replies} == {50001}
    # Past 16 MiB unread by the engine, the rest were answered at once, not held.
    assert router.server.logged("the engine is behind: it has not read what it was sent")
    assert grown_mib < 200, grown_mib
    # A reason is logged when it changes and at most once a second, not once a notification.
    assert router.server.log_text().count("answered 50001:") < len(replies) // 2


def test_an_engine_silent_for_thirty_seconds_is_replaced(router: Router) -> None:
    stuck = the_engine(router)
    os.kill(stuck.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: [p for p in children(router.server.pid) if p.pid != stuck.pid],
                   "a new engine in place of the stuck one", timeout=90)
    finally:
        if os.path.exists(f"/proc/{stuck.pid}"):
            os.kill(stuck.pid, signal.SIGCONT)
    assert router.server.logged("the engine has not answered for 30 s; killing it")
    wait_until(lambda: router.http.get(router.base_url + "/readyz").status_code == 200,
               "the new engine ready")
    assert router.post(router.hmac.notification(sample_payload("TX-NEW-ENGINE")))["errcode"] == 0
