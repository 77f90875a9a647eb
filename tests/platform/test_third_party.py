"""A plugin published as its own package: installed by this test run, found through its
entry point, configured like a built-in, and run end to end and through the test kit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from arrears_router.platform.registry import Registry, available_plugins
from arrears_router.testkit import RouterFactory
from tests.harness import RouterProcess, cli_json, python_path, wait_until, write_config


@pytest.fixture
def installed(example_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example package, importable by this process for the test."""
    monkeypatch.syspath_prepend(str(example_site))
    return example_site


def test_its_entry_point_is_discovered(installed: Path) -> None:
    assert "receipt_log" in available_plugins()


def test_configured_by_name_like_a_built_in(installed: Path, tmp_path: Path) -> None:
    registry = Registry.load({"receipt_log": {"directory": str(tmp_path)}})
    assert type(registry.plugins["receipt_log"].instance).__name__ == "ReceiptLog"


def test_through_the_kit_once_per_payment_even_delivered_twice(
    installed: Path, arrears_router: RouterFactory, tmp_path: Path
) -> None:
    receipts = tmp_path / "receipts"
    router = arrears_router({"receipt_log": {"directory": str(receipts)}}, autoload=True)
    report = router.exercise(total_fee=450)
    report.assert_done("receipt_log")
    assert report.deliveries["receipt_log"].note == "already written"
    [receipt] = receipts.iterdir()
    assert report.transaction_id in receipt.name
    assert '"yuan": "4.50"' in receipt.read_text()


def test_end_to_end_in_a_router_process(
    example_site: Path, tmp_path: Path, start_process: Callable[..., RouterProcess]
) -> None:
    receipts = tmp_path / "receipts"
    config = write_config(tmp_path / "config.toml",
                          plugins={"receipt_log": {"directory": str(receipts)}})
    env = python_path(example_site)
    server = start_process(config, "serve", "--port", "0", env=env)

    sent = cli_json("simulate", "--count", "3", "--url", f"{server.url}/ridecode/arrears",
                    config=config)

    assert {outcome["errcode"] for outcome in sent} == {0}

    def all_done() -> list[dict[str, Any]] | None:
        done = cli_json("deliveries", "list", "--status", "done", config=config, env=env)
        return done if len(done) == 3 else None

    done = wait_until(all_done, "3 deliveries done")
    assert {d["note"][:5] for d in done} == {"wrote"}
    assert len(list(receipts.iterdir())) == 3
