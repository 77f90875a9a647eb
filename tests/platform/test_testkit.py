"""The test kit plugin authors get (``arrears_router.testkit``): its exported types, and what
``settle`` waits for. The rest of the suite uses the kit, so it is exercised everywhere.
"""

from __future__ import annotations

import inspect
import threading
from pathlib import Path
from typing import Protocol

import pytest

from arrears_router import testkit
from arrears_router.store import DeliveryStatus
from arrears_router.testkit import Report, RouterFactory, TestRouter
from arrears_router.wire.notifier import sample_payload
from tests.sample_plugins import HOLDS, Recorder

CLASSES = {"a": Recorder, "b": Recorder}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_kit_exports_its_types_as_pytest_does() -> None:
    assert testkit.__all__ == ["Report", "RouterFactory", "TestRouter"]
    for name in testkit.__all__:
        assert f":class:`{name}`" in (testkit.__doc__ or ""), f"{name} is not documented"
    assert Protocol in RouterFactory.__mro__
    assert list(inspect.signature(RouterFactory.__call__).parameters) == [
        "self", "plugins", "classes", "autoload"]


def test_the_fixture_is_the_factory_its_type_describes(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router(plugins={"a": {"path": str(log)}}, classes=CLASSES, autoload=False)
    assert isinstance(router, TestRouter)
    report = router.pay()
    assert isinstance(report, Report)
    report.assert_done("a")


def test_settle_waits_for_a_retry_due_later_than_its_timeout(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    """Neither settled nor stuck while the retry is not yet due: settled once it has run."""
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log), "fail_attempts": 1, "retry_after": 3,
                                   "backoff": 3600, "backoff_cap": 3600}}, classes=CLASSES)
    transaction_id = "4200000000000000000000000001"
    assert router.send(sample_payload(transaction_id)).errcode == 0

    delivery = router.settle(transaction_id, timeout=2)["a"]

    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 2)
    assert delivery.error_before_done == "RetryableError: busy"
    assert [line for line in lines(log) if line.startswith("call")] == [
        f"call a {transaction_id} 1", f"call a {transaction_id} 2"]


def test_settle_fails_naming_a_delivery_due_and_not_run(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log, gate = tmp_path / "log", HOLDS.setdefault(str(tmp_path), threading.Event())
    router = arrears_router({"a": {"path": str(log), "hold": str(tmp_path)}}, classes=CLASSES)
    transaction_id = "4200000000000000000000000001"
    assert router.send(sample_payload(transaction_id)).errcode == 0
    try:
        with pytest.raises(AssertionError, match=r"not run within 0\.5 s of their time") as caught:
            router.settle(transaction_id, timeout=0.5)
        assert "plugin='a'" in str(caught.value)
    finally:
        gate.set()
    assert router.settle(transaction_id)["a"].status is DeliveryStatus.DONE


def test_settle_counts_a_delivery_held_behind_a_paused_plugin_as_settled(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    router = arrears_router({"a": {"path": str(log), "mode": "paused"},
                             "b": {"path": str(log), "after": ["a"]}}, classes=CLASSES)
    first, second = router.pay(), router.pay()
    for report in (first, second):
        assert {name: (d.status, d.attempt) for name, d in report.deliveries.items()} == {
            "a": (DeliveryStatus.PENDING, 0), "b": (DeliveryStatus.PENDING, 0)}
        assert {d.transaction_id for d in report.deliveries.values()} == {report.transaction_id}
    router.set_mode("a", "enabled")
    for report in (first, second):  # released
        assert router.settle(report.transaction_id)["b"].status is DeliveryStatus.DONE
