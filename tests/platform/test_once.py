"""``delivery.once``: a plugin's effect made once through retries and replays, and at most
once, flagged for a person, where an earlier attempt's outcome is unknown."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest

from arrears_router import ArrearsPayment, Delivery, RetryableError, hookimpl
from arrears_router.store import DeliveryStatus
from arrears_router.testkit import RouterFactory
from tests.sample_plugins import DeadLetters

UNKNOWN = "not done again: an earlier attempt's outcome is unknown (at most once)"


class Texter:
    """Texts (a line in a file) once per payment; told to lose the answer of one attempt
    (the text went out, the plugin cannot know it) or to be refused on one (nothing went)."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        path: str
        at_most_once: bool = True
        lose_answer_on: int = 0
        refused_on: int = 0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        s = self.settings
        async with delivery.once(at_most_once=s.at_most_once) as effect:
            if not effect.act:
                return effect.note
            if delivery.attempt == s.refused_on:
                effect.nothing_done()
                raise RetryableError("refused")
            await asyncio.to_thread(text, s.path, payment.transaction_id)
            if delivery.attempt == s.lose_answer_on:
                raise RetryableError("no answer")
        return "texted"


def text(path: str, transaction_id: str) -> None:
    with Path(path).open("a", encoding="utf-8") as file:
        file.write(f"text {transaction_id}\n")


def texts(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def test_an_unknown_outcome_is_not_acted_on_again_at_most_once_and_a_person_is_told(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    sent, alerts = tmp_path / "texts", tmp_path / "alerts"
    router = arrears_router({"t": {"path": str(sent), "lose_answer_on": 1},
                             "alerts": {"path": str(alerts)}},
                            classes={"t": Texter, "alerts": DeadLetters})
    report = router.pay()
    delivery = report.deliveries["t"]
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 2)
    assert delivery.note.startswith(f"{UNKNOWN}; flagged: an attempt began at ")
    assert texts(sent) == [f"text {report.transaction_id}"]
    [flagged] = texts(alerts)  # every plugin's payment_flagged heard of it
    assert flagged.startswith("flagged t an attempt began at ")


def test_an_unknown_outcome_is_acted_on_again_at_least_once(
    arrears_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="arrears_router.plugin.t")
    sent = tmp_path / "texts"
    router = arrears_router({"t": {"path": str(sent), "lose_answer_on": 1,
                                   "at_most_once": False}}, classes={"t": Texter})
    report = router.pay()
    assert (report.deliveries["t"].status, report.deliveries["t"].note) == (
        DeliveryStatus.DONE, "texted")
    assert texts(sent) == [f"text {report.transaction_id}"] * 2
    assert "an earlier attempt's outcome is unknown; acting again" in caplog.text


def test_nothing_done_leaves_the_retry_free_to_act(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    sent = tmp_path / "texts"
    router = arrears_router({"t": {"path": str(sent), "refused_on": 1}}, classes={"t": Texter})
    report = router.pay()
    delivery = report.deliveries["t"]
    assert (delivery.status, delivery.attempt, delivery.note) == (DeliveryStatus.DONE, 2, "texted")
    assert texts(sent) == [f"text {report.transaction_id}"]


def test_a_done_effect_is_not_done_again_by_a_duplicate_delivery(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    sent = tmp_path / "texts"
    router = arrears_router({"t": {"path": str(sent)}}, classes={"t": Texter})
    report = router.exercise()  # a payment, then the duplicate a crash would cause
    assert report.deliveries["t"].note.startswith("done already at ")
    assert texts(sent) == [f"text {report.transaction_id}"]


def test_a_delivery_made_outside_a_router_has_nowhere_to_record_an_effect() -> None:
    delivery = Delivery(id=1, plugin="t", attempt=1, idempotency_key="m:t:t", settings=None,
                        log=logging.getLogger("t"))
    with pytest.raises(RuntimeError, match="no store to record its effect in"):
        delivery.once()
