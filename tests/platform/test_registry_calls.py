"""The registry's typed hook calls, one plugin's implementation at a time, and what the router
does when its plugins cannot all start: those started are stopped, and the store is closed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from arrears_router import ArrearsPayment, Delivery
from arrears_router.config import load_config
from arrears_router.platform.registry import Registry, RegistryError
from arrears_router.platform.runtime import Router
from arrears_router.store import StoreError
from arrears_router.store.sqlite import SqliteStore
from tests.harness import write_config
from tests.sample_plugins import DeadLetters, Faulty, Recorder
from tests.store.records import payment

pytestmark = pytest.mark.anyio


BROKEN = {"fail_start": True}
"""The table of a plugin that fails in every hook, its start included."""
CLASSES: dict[str, type] = {"a": Recorder, "z": Recorder, "broken": Faulty,
                            "alerts": DeadLetters, "more_alerts": DeadLetters}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def load(tmp_path: Path, *names: str) -> Registry:
    """A registry of ``names`` in this order, each writing to the log file of its name."""
    return Registry.load({name: BROKEN if name == "broken" else {"path": str(tmp_path / name)}
                          for name in names}, autoload=False, classes=CLASSES)


def delivery(plugin: str, pay: ArrearsPayment) -> Delivery:
    return Delivery(id=1, plugin=plugin, attempt=1, idempotency_key=f"m1:{pay.transaction_id}:a",
                    settings=None, log=logging.getLogger("test"))


async def test_arrears_paid_runs_the_one_plugin_named_and_returns_its_note(
    tmp_path: Path,
) -> None:
    registry = load(tmp_path, "a", "z")
    pay = payment("T1")
    note = await registry.arrears_paid("a", payment=pay, delivery=delivery("a", pay))
    assert note == f"recorded {pay.total_fee} fen"
    assert lines(tmp_path / "a") == ["call a T1 1", "effect m1:T1:a"]
    assert lines(tmp_path / "z") == []
    assert await registry.arrears_paid("broken", payment=pay, delivery=delivery("a", pay)) is None


async def test_announcements_reach_every_plugin_past_one_that_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = load(tmp_path, "alerts", "broken", "more_alerts")
    pay = payment("T1")
    with caplog.at_level(logging.ERROR, "arrears_router.registry"):
        await registry.announce_flag(payment=pay, delivery=delivery("a", pay), reason="look")
        await registry.announce_dead(payment=pay, delivery=delivery("a", pay), error="gone")
    for name in ("alerts", "more_alerts"):
        assert lines(tmp_path / name) == ["flagged a look", "dead a T1 gone"]
    assert "plugin broken failed in payment_flagged" in caplog.text
    assert "plugin broken failed in delivery_dead" in caplog.text


async def test_start_all_stops_the_plugins_started_when_one_fails(tmp_path: Path) -> None:
    registry = load(tmp_path, "a", "broken", "z")
    with pytest.raises(RegistryError, match=r"^plugins\.broken: router_started failed: "
                                            r"OSError\('no such printer'\)"):
        await registry.start_all("sqlite:////nowhere.db")
    assert lines(tmp_path / "a") == ["started sqlite:////nowhere.db", "stopping"]
    assert lines(tmp_path / "z") == []  # never started, so never stopped


async def test_stop_all_stops_every_plugin_past_one_that_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = load(tmp_path, "a", "broken", "z")
    with caplog.at_level(logging.ERROR, "arrears_router.registry"):
        await registry.stop_all()
    assert lines(tmp_path / "a") == lines(tmp_path / "z") == ["stopping"]
    assert "plugin broken failed in router_stopping" in caplog.text


def config(tmp_path: Path, plugins: dict[str, dict[str, Any]]) -> Path:
    return write_config(tmp_path / "config.toml", plugins=plugins)


async def test_a_router_whose_plugins_cannot_all_start_closes_its_store(tmp_path: Path) -> None:
    path = config(tmp_path, {"a": {"path": str(tmp_path / "a")}, "broken": BROKEN})
    router = Router(load_config(path), plugin_classes=CLASSES, autoload=False)
    with pytest.raises(RegistryError, match=r"plugins\.broken: router_started failed"):
        await router.start()

    assert lines(tmp_path / "a") == [f"started sqlite:///{tmp_path / 'router.db'}", "stopping"]
    with pytest.raises(StoreError, match="not running"):
        await router.store.ping()
    # Its writer and reader both closed: the last to close checkpointed the log away ...
    store = tmp_path / "router.db"
    assert store.exists()
    assert not store.with_name("router.db-wal").exists()
    # ... and another writer takes the file at once.
    other = SqliteStore(str(store))
    await other.open()
    await other.ping()
    await other.close()
