"""Deliveries through a real router (the test kit's): outcomes, isolation, order, modes."""

from __future__ import annotations

import logging
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from arrears_router.store import DeliveryStatus
from arrears_router.testkit import RouterFactory
from arrears_router.wire.notifier import sample_payload
from tests.harness import wait_until
from tests.sample_plugins import HOLDS, ContextFlagger, DeadLetters, Recorder, SyncRecorder

CLASSES = {"a": Recorder, "b": Recorder, "c": Recorder, "alerts": DeadLetters}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def calls(path: Path, plugin: str) -> list[str]:
    return [line for line in lines(path) if line.startswith(f"call {plugin} ")]


def test_a_payment_reaches_each_enabled_plugin_once(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log)}, "b": {"path": str(log)}}, classes=CLASSES)
    report = router.pay(total_fee=250)
    assert report.reply.errcode == 0
    report.assert_done()
    assert report.deliveries["a"].note == "recorded 250 fen"
    assert len(calls(log, "a")) == len(calls(log, "b")) == 1


def test_one_failing_and_one_hanging_plugin_never_touch_another(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router({
        "a": {"path": str(log), "fail_attempts": 2},
        "b": {"path": str(log), "hang_attempts": 1, "timeout": 0.5},
        "c": {"path": str(log)},
    }, classes=CLASSES)
    report = router.pay()
    report.assert_done("a", "b", "c")
    assert len(calls(log, "c")) == 1  # C ran once, never repeated by A's or B's failures
    assert report.deliveries["c"].attempt == 1
    assert report.deliveries["a"].attempt == 3  # two failures, then success
    assert "RuntimeError: flaky" in report.deliveries["a"].error_before_done
    assert report.deliveries["b"].attempt == 2  # timed out once, then succeeded
    assert report.deliveries["b"].error_before_done == "timed out after 0.5 s"


def test_a_plugin_never_runs_more_calls_at_once_than_its_concurrency(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log), "slow": 0.3, "concurrency": 2},
                             "b": {"path": str(log)}}, classes=CLASSES)
    with ThreadPoolExecutor(8) as pool:  # eight payments at once
        reports = list(pool.map(lambda _: router.pay(), range(8)))
    for report in reports:
        report.assert_done("a", "b")
    in_flight = peak = 0
    for line in lines(log):
        if line.startswith("call a "):
            in_flight += 1
            peak = max(peak, in_flight)
        elif line.startswith("leave a "):
            in_flight -= 1
    assert peak == 2  # the limit was reached and never passed; the rest waited their turn
    assert len(calls(log, "a")) == len(calls(log, "b")) == 8


def test_retry_after_is_honoured(arrears_router: RouterFactory, tmp_path: Path) -> None:
    log = tmp_path / "log"
    router = arrears_router(
        {"a": {"path": str(log), "fail_attempts": 1, "retry_after": 0.3, "backoff": 3600,
               "backoff_cap": 3600}},
        classes=CLASSES,
    )
    report = router.pay()
    report.assert_done("a")  # a backoff of an hour would not have finished
    assert report.deliveries["a"].error_before_done == "RetryableError: busy"


def test_attempts_run_out_then_dead_and_the_dead_letter_hook_fires(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log, alerts = tmp_path / "log", tmp_path / "alerts"
    router = arrears_router({
        "a": {"path": str(log), "fail_attempts": 99, "max_attempts": 3},
        "alerts": {"path": str(alerts)},
    }, classes=CLASSES)
    report = router.pay()
    dead = report.deliveries["a"]
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 3)
    assert dead.last_error == "gave up after 3 attempts: RuntimeError: flaky"
    # The dead-letter hook is told once the outcome is recorded: wait for it, not on it.
    expected = [f"dead a {report.transaction_id} {dead.last_error}"]
    assert wait_until(lambda: lines(alerts) or None, "the dead-letter hook told") == expected


def test_a_permanent_error_is_dead_at_once(arrears_router: RouterFactory, tmp_path: Path) -> None:
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log), "permanent": True}}, classes=CLASSES)
    dead = router.pay().deliveries["a"]
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 1)
    assert dead.last_error == "PermanentError: refused for good"


def test_a_replayed_dead_delivery_runs_again(arrears_router: RouterFactory, tmp_path: Path) -> None:
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log), "permanent": True}}, classes=CLASSES)
    report = router.pay()
    again = router.redeliver(report).deliveries["a"]
    assert (again.status, again.replays) == (DeliveryStatus.DEAD, 1)
    assert len(calls(log, "a")) == 2


def test_a_duplicate_delivery_keeps_its_idempotency_key(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log)}}, classes=CLASSES)
    report = router.exercise()
    report.assert_done("a")
    assert report.deliveries["a"].replays == 1
    assert report.deliveries["a"].note == "duplicate: already done"
    effects = [line for line in lines(log) if line.startswith("effect")]
    assert effects == [f"effect 1900000109:{report.transaction_id}:a"]


def test_a_sync_hook_taking_only_the_payment(arrears_router: RouterFactory, tmp_path: Path) -> None:
    log = tmp_path / "log"
    router = arrears_router({"s": {"path": str(log)}}, classes={"s": SyncRecorder})
    report = router.pay()
    report.assert_done("s")
    assert lines(log) == [f"sync {report.transaction_id}"]


def test_after_waits_for_its_predecessor(arrears_router: RouterFactory, tmp_path: Path) -> None:
    log = tmp_path / "log"
    router = arrears_router({
        "a": {"path": str(log), "fail_attempts": 2},
        "b": {"path": str(log), "after": ["a"]},
    }, classes=CLASSES)
    report = router.pay()
    report.assert_done("a", "b")
    order = [line.split()[1] for line in lines(log) if line.startswith("effect")]
    assert order == ["1900000109:" + report.transaction_id + ":a",
                     "1900000109:" + report.transaction_id + ":b"]


def test_a_dead_predecessor_holds_the_delivery(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router({
        "a": {"path": str(log), "permanent": True},
        "b": {"path": str(log), "after": ["a"]},
    }, classes=CLASSES)
    report = router.pay()
    assert report.deliveries["a"].status is DeliveryStatus.DEAD
    held = report.deliveries["b"]
    assert (held.status, held.attempt) == (DeliveryStatus.PENDING, 0)
    assert calls(log, "b") == []


def test_paused_holds_and_enabling_releases_in_order(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log), "mode": "paused"}}, classes=CLASSES)
    first, second = router.pay(), router.pay()
    assert first.deliveries["a"].status is DeliveryStatus.PENDING
    assert second.deliveries["a"].attempt == 0
    router.set_mode("a", "enabled")
    router.settle(second.transaction_id)
    router.settle(first.transaction_id)
    assert [line.split()[2] for line in calls(log, "a")] == [
        first.transaction_id, second.transaction_id
    ]


def test_disabled_creates_no_delivery(arrears_router: RouterFactory, tmp_path: Path) -> None:
    log = tmp_path / "log"
    router = arrears_router({
        "a": {"path": str(log), "mode": "disabled"}, "b": {"path": str(log)},
    }, classes=CLASSES)
    report = router.pay()
    assert set(report.deliveries) == {"b"}
    router.set_mode("a", "enabled")
    assert set(router.pay().deliveries) == {"a", "b"}


def test_an_outcome_the_store_cannot_record_frees_its_slot_and_runs_again(
    arrears_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log, go = tmp_path / "log", HOLDS.setdefault(str(tmp_path), threading.Event())
    # One slot: had the failed record kept it, the retry could never be claimed. The lease
    # (timeout + 5 s) outlasts the store's 2 s wait for the write lock.
    router = arrears_router({"a": {"path": str(log), "hold": str(tmp_path), "concurrency": 1,
                                   "timeout": 3}}, classes=CLASSES)
    transaction_id = "4200000000000000000000000001"
    with caplog.at_level(logging.ERROR, "arrears_router.dispatch"):
        assert router.send(sample_payload(transaction_id)).errcode == 0
        wait_until(lambda: calls(log, "a"), "a's call")
        # Another process holds the write lock past the busy timeout while the call ends.
        locker = sqlite3.connect(router.config_path.parent / "router.db", isolation_level=None)
        try:
            locker.execute("BEGIN IMMEDIATE")
            go.set()
            wait_until(lambda: "cannot record its outcome" in caplog.text, "the failed record")
        finally:
            locker.close()
    delivery = router.settle(transaction_id)["a"]
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 2)  # its lease lapsed
    assert calls(log, "a") == [f"call a {transaction_id} 1", f"call a {transaction_id} 2"]
    assert delivery.note == "duplicate: already done"  # the effect itself happened once


def test_telling_of_a_flag_holds_the_delivery_slot_until_told(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log, go = tmp_path / "log", HOLDS.setdefault(str(tmp_path), threading.Event())
    router = arrears_router({"a": {"path": str(log), "flag": True, "concurrency": 1},
                             "alerts": {"path": str(log), "hold": str(tmp_path)}},
                            classes=CLASSES)
    first, second = "4200000000000000000000000001", "4200000000000000000000000002"
    assert router.send(sample_payload(first)).errcode == 0
    wait_until(lambda: "flagging a" in lines(log), "the telling of the flag")
    # Stored while the alerts hear of the first flag: a's one slot is still the first's,
    # so the second payment's call waits (a burst of flags is bounded as the calls were).
    assert router.send(sample_payload(second)).errcode == 0
    go.set()
    router.settle(second)
    wait_until(lambda: f"flagged a R{second} needs a look" in lines(log), "the second flag")
    order = [line for line in lines(log) if line.startswith(("call a", "flagged a"))]
    assert order == [f"call a {first} 1", f"flagged a R{first} needs a look",
                     f"call a {second} 1", f"flagged a R{second} needs a look"]


def test_a_flag_is_told_from_its_own_delivery_s_context(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    names = ("x", "y", "z")  # three deliveries of one payment, recorded in one write
    router = arrears_router({name: {"path": str(log)} for name in names},
                            classes=dict.fromkeys(names, ContextFlagger))
    router.pay()
    wait_until(lambda: len(lines(log)) == 9, "nine tellings")  # each flag told to each of the three
    assert sorted(lines(log)) == [f"flag of {name}: set by {name}"
                                  for name in names for _ in range(3)]
