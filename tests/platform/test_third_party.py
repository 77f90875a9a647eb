"""A plugin published as its own package: installed by this test run, found through its
entry point, configured like a built-in, and run end to end and through the test kit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from arrears_router.platform.registry import Registry, available_plugins
from arrears_router.testkit import TestRouter
from tests.platform.live import wait_for_done

PACKAGE = Path(__file__).resolve().parents[1] / "example_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """pip-installs the example package into a folder of its own and puts it on the path."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(PACKAGE)],
        check=True, capture_output=True, timeout=300,
    )
    sys.path.insert(0, str(target))
    yield target
    sys.path.remove(str(target))


def test_its_entry_point_is_discovered(installed: Path) -> None:
    assert "receipt_log" in available_plugins()


def test_configured_by_name_like_a_built_in(installed: Path, tmp_path: Path) -> None:
    registry = Registry.load({"receipt_log": {"directory": str(tmp_path)}})
    assert type(registry.plugins["receipt_log"].instance).__name__ == "ReceiptLog"


def test_through_the_kit_once_per_payment_even_delivered_twice(
    installed: Path, arrears_router: Callable[..., TestRouter], tmp_path: Path
) -> None:
    receipts = tmp_path / "receipts"
    router = arrears_router({"receipt_log": {"directory": str(receipts)}}, autoload=True)
    report = router.exercise(total_fee=450)
    report.assert_done("receipt_log")
    assert report.deliveries["receipt_log"].note == "already written"
    [receipt] = receipts.iterdir()
    assert report.transaction_id in receipt.name
    assert '"yuan": "4.50"' in receipt.read_text()


def test_end_to_end_in_a_router_process(installed: Path, tmp_path: Path) -> None:
    receipts = tmp_path / "receipts"
    config = tmp_path / "config.toml"
    config.write_text(
        '[store]\nurl = "sqlite:///router.db"\n'
        '[[merchants]]\nappid = "wx1"\nmch_id = "m1"\nsign_key = "k"\n'
        'aes_key = "0123456789abcdef"\n'
        f'[plugins.receipt_log]\ndirectory = "{receipts}"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    server = subprocess.Popen(
        [sys.executable, "-m", "arrears_router", "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[-1]
        sent = subprocess.run(
            [sys.executable, "-m", "arrears_router", "simulate", "--config", str(config), "--count", "3",
             "--url", f"{url}/ridecode/arrears"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert sent.returncode == 0, sent.stderr
        done = wait_for_done(config, env, expected=3)
        assert {d["note"][:5] for d in done} == {"wrote"}
        assert len(list(receipts.iterdir())) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
