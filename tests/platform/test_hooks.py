"""A test per hook, named for it (``test_hook_<name>``): each proves what the hook's
contract in ``arrears_router.hookspecs`` says, through a real router and the plugins of
tests/sample_plugins.py (the commands hook: an installed package's). A meta-test keeps a test
for every hook.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from arrears_router import hookspecs
from arrears_router.platform.registry import RegistryError
from arrears_router.store import DeliveryStatus
from arrears_router.testkit import RouterFactory
from tests.harness import RouterProcess, cli, cli_json, python_path, wait_until, write_config
from tests.reconcile.bills import Trade, bill_bytes
from tests.sample_plugins import DeadLetters, Faulty, Recorder, SyncRecorder

CLASSES: dict[str, type] = {"a": Recorder, "z": Recorder, "sync": SyncRecorder,
                            "faulty": Faulty, "alerts": DeadLetters, "more_alerts": DeadLetters}
HOOKS = sorted(name for name, value in vars(hookspecs).items()
               if hasattr(value, f"{hookspecs.PROJECT}_spec"))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def told(path: Path) -> list[str]:
    """What a plugin telling of flags or deaths wrote, once it has written something."""
    return wait_until(lambda: lines(path), f"{path.name} told")


def logs(tmp_path: Path, *names: str) -> dict[str, dict[str, str]]:
    """``[plugins.NAME]`` tables for sample plugins, each writing to a file of its name."""
    return {name: {"path": str(tmp_path / name)} for name in names}


def test_every_hook_has_a_test_named_for_it() -> None:
    assert HOOKS, "no hookspecs found"
    tests = {name for name in globals() if name.startswith("test_hook_")}
    assert tests == {f"test_hook_{hook}" for hook in HOOKS}


def test_hook_arrears_paid(arrears_router: RouterFactory, tmp_path: Path) -> None:
    """Once per attempt, for the one plugin whose delivery it is, with the payment and the
    attempt; a plugin may take only the payment; the note returned is kept."""
    router = arrears_router({"a": {"path": str(tmp_path / "a"), "fail_attempts": 1},
                             "sync": {"path": str(tmp_path / "sync")}}, classes=CLASSES)
    report = router.pay(total_fee=450)
    tx = report.transaction_id
    report.assert_done("a", "sync")
    assert lines(tmp_path / "a") == [f"started {router.config.store.url}",
                                     f"call a {tx} 1", f"call a {tx} 2",
                                     f"effect 1900000109:{tx}:a"]
    assert report.deliveries["a"].note == "recorded 450 fen"
    assert report.deliveries["a"].error_before_done == "RuntimeError: flaky"
    assert lines(tmp_path / "sync") == [f"sync {tx}"]  # its one call, never a's retry


def test_hook_router_started(arrears_router: RouterFactory, tmp_path: Path) -> None:
    """Before the first delivery, with the store's URL; a plugin that fails it stops the
    start, named, and the plugins started before it are stopped again."""
    failed = tmp_path / "failed"
    failed.mkdir()
    with pytest.raises(RegistryError, match=r"plugins\.faulty: router_started failed: "
                                            r"OSError\('no such printer'\)"):
        arrears_router({**logs(failed, "z"), "faulty": {"fail_start": True}}, classes=CLASSES)
    assert [line.split()[0] for line in lines(failed / "z")] == ["started", "stopping"]

    router = arrears_router(logs(tmp_path, "a"), classes=CLASSES)
    assert lines(tmp_path / "a") == [f"started {router.config.store.url}"]
    tx = router.pay().transaction_id
    assert lines(tmp_path / "a") == [f"started {router.config.store.url}", f"call a {tx} 1",
                                     f"effect 1900000109:{tx}:a"]


def test_hook_router_stopping(
    arrears_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After the last delivery, on every plugin, one that fails it logged and passed over."""
    router = arrears_router({**logs(tmp_path, "a"), "faulty": {}, **logs(tmp_path, "z")},
                            classes=CLASSES)
    tx = router.pay().transaction_id
    assert "stopping" not in lines(tmp_path / "a")
    router.stop()
    assert lines(tmp_path / "a")[-2:] == [f"effect 1900000109:{tx}:a", "stopping"]
    assert lines(tmp_path / "z")[-2:] == [f"effect 1900000109:{tx}:z", "stopping"]
    assert "plugin faulty failed in router_stopping" in caplog.text


def test_hook_payment_flagged(
    arrears_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Told to every plugin once the flagging delivery is done, with its reason; one that
    fails it keeps no other from hearing."""
    plugins = {**logs(tmp_path, "alerts"), "faulty": {}, **logs(tmp_path, "more_alerts")}
    router = arrears_router({"a": {"path": str(tmp_path / "a"), "flag": True}, **plugins},
                            classes=CLASSES)
    report = router.pay(repay_no="R42")
    report.assert_done("a")
    assert report.deliveries["a"].note == "recorded 300 fen; flagged: R42 needs a look"
    for name in ("alerts", "more_alerts"):
        assert told(tmp_path / name) == ["flagged a R42 needs a look"]
    assert "plugin faulty failed in payment_flagged" in caplog.text


def test_hook_delivery_dead(
    arrears_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Told to every plugin when any plugin's delivery gives up, with why; the dead delivery
    waits for a replay, and one plugin failing the hook keeps no other from hearing."""
    plugins = {**logs(tmp_path, "alerts"), "faulty": {}, **logs(tmp_path, "more_alerts")}
    router = arrears_router({"a": {"path": str(tmp_path / "a"), "permanent": True}, **plugins},
                            classes=CLASSES)
    report = router.pay()
    dead = report.deliveries["a"]
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 1)
    for name in ("alerts", "more_alerts"):
        assert told(tmp_path / name) == [
            f"dead a {report.transaction_id} PermanentError: refused for good"]
    assert "plugin faulty failed in delivery_dead" in caplog.text


def test_hook_reconciled(tmp_path: Path) -> None:
    """Told to every plugin once a reconcile run's report is kept, with the report; one that
    fails it keeps no other from hearing, nor changes what the command exits with."""
    plugins = {name: {"use": f"tests.sample_plugins:{cls}", **settings} for name, cls, settings
               in (("alerts", "DeadLetters", {"path": str(tmp_path / "alerts")}),
                   ("faulty", "Faulty", {}),
                   ("more_alerts", "DeadLetters", {"path": str(tmp_path / "more_alerts")}))}
    config = write_config(tmp_path / "config.toml", plugins=plugins)
    cli("migrate", config=config, check=True)  # the store, empty: as a router leaves it
    bill = tmp_path / "bill.csv"
    bill.write_bytes(bill_bytes([Trade("4200000001", mch_id="m1")]))
    result = cli("reconcile", str(bill), "--merchant", "m1", "--date", "2026-11-25",
                 config=config, env=python_path())
    assert result.returncode == 1, result.stderr  # the bill's payment never arrived
    for name in ("alerts", "more_alerts"):
        assert lines(tmp_path / name) == ["reconciled m1 2026-11-25 #1 missing 1 matched 0"]
    assert "plugin faulty failed in reconciled" in result.stderr


def test_hook_register_commands(
    example_site: Path, tmp_path: Path, start_process: Callable[..., RouterProcess]
) -> None:
    """An installed package's commands join ``arrears-router``'s, and read what its plugin
    did in a running router."""
    env = python_path(example_site)
    receipts = tmp_path / "receipts"
    config = write_config(tmp_path / "config.toml",
                          plugins={"receipt_log": {"directory": str(receipts)}})
    server = start_process(config, "serve", "--port", "0", env=env)
    sent = cli_json("simulate", "--count", "2", "--url", f"{server.url}/ridecode/arrears",
                    config=config)
    wait_until(lambda: len(list(receipts.glob("*.json"))) == 2, "two receipts written")

    listed = cli_json("receipts", str(receipts), config=config, env=env)
    paid = {e["payment"]["transaction_id"]: f"{e['payment']['total_fee'] / 100:.2f}"
            for e in cli_json("events", "list", config=config)}
    assert sorted(paid) == sorted(s["transaction_id"] for s in sent)
    assert {r["transaction_id"]: r["yuan"] for r in listed} == paid
    helped = cli("--help", env=env, check=True)
    assert "receipts" in helped.stdout
    assert "ledger" in helped.stdout  # a built-in's, added the same way
    assert server.log_text().count("cannot be loaded") == 0
