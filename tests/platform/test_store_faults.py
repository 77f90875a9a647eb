"""The dispatcher when its store fails in a way the store contract does not allow for."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.config import MerchantConfig, parse_config
from core.runtime import Router
from core.store import DeliveryResult, DeliveryStatus
from core.store.sqlite import SqliteStore
from core.testkit import config_text
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
            await dispatcher.drain()
            assert "cannot record its outcome (ValueError('a bug in the store'))" in caplog.text
            # a's one slot is free again: the next payment's delivery starts as it is stored
            # (a slot still taken would leave it to a claim once the slot frees: never).
            await dispatcher.accept(event(payment("T2")))
            await dispatcher.drain()
            (second,) = [d for d in await store.deliveries(plugin="a") if d.transaction_id == "T2"]
            assert (second.status, second.attempt) == (DeliveryStatus.DONE, 1)
