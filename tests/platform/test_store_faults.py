"""The dispatcher when its store fails in a way the store contract does not allow for."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from arrears_router.config import MerchantConfig, parse_config
from arrears_router.platform.runtime import Router
from arrears_router.store import ClaimedDelivery, ClaimLimit, DeliveryResult, DeliveryStatus
from arrears_router.store.sqlite import SqliteStore
from arrears_router.testkit import config_text
from tests.harness import arrive
from tests.sample_plugins import Recorder
from tests.store.records import event, payment

pytestmark = pytest.mark.anyio


class BrokenOnce(SqliteStore):
    """A real SQLite store whose first outcome write fails with a bug, not a StoreError."""

    failed = False

    async def finish(self, results: Sequence[DeliveryResult]) -> list[bool]:
        if not self.failed:
            self.failed = True
            raise ValueError("a bug in the store")
        return await super().finish(results)


async def test_an_outcome_write_failing_with_a_bug_still_frees_its_slot(
    tmp_path: Path, merchant: MerchantConfig, caplog: pytest.LogCaptureFixture
) -> None:
    text = config_text(merchant, {"a": {"path": str(tmp_path / "log"), "concurrency": 1}})
    store = BrokenOnce(str(tmp_path / "router.db"))
    router = Router(parse_config(text, tmp_path), store=store, plugin_classes={"a": Recorder},
                    autoload=False)
    with caplog.at_level(logging.ERROR, "arrears_router.dispatch"):
        async with router.running():
            dispatcher = router.dispatcher
            assert dispatcher is not None
            await dispatcher.accept(event(payment("T1")))
            failure = "cannot record its outcome (ValueError('a bug in the store'))"

            async def logged() -> bool:
                return failure in caplog.text

            await arrive(logged, "the failed outcome write is logged")
            # a's one slot is free again, so the next payment's delivery runs (a slot still
            # taken would leave it unclaimed for ever).
            await dispatcher.accept(event(payment("T2")))

            async def second_done() -> bool:
                found = [d for d in await store.deliveries(plugin="a")
                         if d.transaction_id == "T2" and d.status is DeliveryStatus.DONE]
                return bool(found) and found[0].attempt == 1

            await arrive(second_done, "T2's delivery to a is done at its first attempt")


class GatedClaims(SqliteStore):
    """A real SQLite store whose claims wait at a gate the test opens."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.claiming = asyncio.Event()
        self.gate = asyncio.Event()

    async def claim(self, wants: Mapping[str, ClaimLimit]) -> list[ClaimedDelivery]:
        self.claiming.set()
        await self.gate.wait()
        return await super().claim(wants)


async def test_stop_waits_for_the_deliveries_of_a_claim_under_way(
    tmp_path: Path, merchant: MerchantConfig
) -> None:
    text = config_text(merchant, {"a": {"path": str(tmp_path / "log")}})
    store = GatedClaims(str(tmp_path / "router.db"))
    router = Router(parse_config(text, tmp_path), store=store, plugin_classes={"a": Recorder},
                    autoload=False)
    dispatcher = router.dispatcher
    assert dispatcher is not None
    await router.start()
    try:
        # Stored by another process, say: only a claim finds it.
        await store.accept(event(payment("T1")))
        await store.claiming.wait()
        stopping = asyncio.create_task(dispatcher.stop())
        await asyncio.sleep(0)  # the stop is under way before the claim returns
        store.gate.set()
        await stopping
        (delivery,) = await store.deliveries(plugin="a")
        assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 1)
    finally:
        await router.stop()
