"""Where a plugin's call failed: kept with the delivery, logged with the failed attempt and
shown by ``deliveries show``; once the delivery is done, shown as what came before it, not
as if current. A plugin that cannot even be built carries its own traceback too."""

from __future__ import annotations

import logging
import re
import traceback
from pathlib import Path

import msgspec
import pytest

from arrears_router import ArrearsPayment, hookimpl
from arrears_router.platform.registry import RegistryError
from arrears_router.store import DeliveryStatus
from arrears_router.testkit import RouterFactory
from tests import sample_plugins
from tests.harness import cli, cli_json
from tests.sample_plugins import Recorder

SAMPLE_PLUGINS = Path(sample_plugins.__file__).name


def messages(caplog: pytest.LogCaptureFixture, part: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if part in record.getMessage()]


def show(router_config: Path, delivery_id: int) -> str:
    return cli("deliveries", "show", str(delivery_id), config=router_config, check=True).stdout


def test_a_dead_delivery_keeps_where_it_failed_in_its_record_its_log_and_show(
    arrears_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    router = arrears_router({"a": {"path": str(tmp_path / "log"), "permanent": True}},
                            classes={"a": Recorder})
    dead = router.pay().deliveries["a"]
    assert dead.status is DeliveryStatus.DEAD
    trace = dead.last_traceback
    assert trace.startswith("Traceback (most recent call last):\n")
    assert re.search(rf'{SAMPLE_PLUGINS}", line \d+, in arrears_paid\n'
                     r' +raise PermanentError\("refused for good"\)', trace)
    assert trace.endswith("\nPermanentError: refused for good")
    [logged] = messages(caplog, "is dead")
    assert logged == f"delivery {dead.id} to a is dead: {dead.last_error}\n{trace}"

    text = show(router.config_path, dead.id)
    assert re.search(r"^  last_error +PermanentError: refused for good$", text, re.M)
    assert "\n  last_traceback:\n    Traceback (most recent call last):\n" in text
    assert text.rstrip("\n").endswith("    PermanentError: refused for good")
    [as_json] = cli_json("deliveries", "show", str(dead.id), config=router.config_path)
    assert (as_json["last_traceback"], as_json["traceback_before_done"]) == (trace, "")
    assert as_json["effect"] is None  # the Recorder records no effect


def test_a_retried_attempt_is_logged_with_its_traceback_and_done_keeps_it_as_before(
    arrears_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="arrears_router.dispatch")  # where retries are told
    router = arrears_router({"a": {"path": str(tmp_path / "log"), "fail_attempts": 1}},
                            classes={"a": Recorder})
    done = router.pay().deliveries["a"]
    assert (done.status, done.attempt) == (DeliveryStatus.DONE, 2)
    assert (done.last_error, done.last_traceback) == ("", "")  # nothing is wrong now
    assert done.error_before_done == "RuntimeError: flaky"
    assert 'raise RuntimeError("flaky")' in done.traceback_before_done
    [retried] = messages(caplog, "failed (attempt 1)")
    assert retried.endswith(f": RuntimeError: flaky\n{done.traceback_before_done}")


def test_a_timeout_keeps_where_the_call_was_when_its_time_ran_out(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    router = arrears_router({"a": {"path": str(tmp_path / "log"), "hang_attempts": 1,
                                   "timeout": 0.5}}, classes={"a": Recorder})
    done = router.pay().deliveries["a"]
    assert done.error_before_done == "timed out after 0.5 s"
    assert re.search(rf'{SAMPLE_PLUGINS}", line \d+, in arrears_paid\n'
                     r" +await asyncio.sleep\(3600\)", done.traceback_before_done)


class Broken:
    """Fails while its file says so: a fault a person fixes before replaying."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        switch: str

    def __init__(self, settings: Settings) -> None:
        self.switch = Path(settings.switch)

    @hookimpl
    def arrears_paid(self, payment: ArrearsPayment) -> str:
        if self.switch.read_text(encoding="utf-8") == "broken":
            raise RuntimeError("broken")
        return f"fixed for {payment.transaction_id}"


def test_a_replayed_then_done_delivery_shows_its_old_error_only_as_before_done(
    arrears_router: RouterFactory, tmp_path: Path
) -> None:
    switch = tmp_path / "switch"
    switch.write_text("broken", encoding="utf-8")
    router = arrears_router({"b": {"switch": str(switch), "max_attempts": 1}},
                            classes={"b": Broken})
    report = router.pay()
    assert report.deliveries["b"].status is DeliveryStatus.DEAD
    switch.write_text("fixed", encoding="utf-8")
    done = router.redeliver(report).deliveries["b"]
    assert (done.status, done.replays) == (DeliveryStatus.DONE, 1)
    assert (done.last_error, done.last_traceback) == ("", "")
    assert done.error_before_done == "gave up after 1 attempts: RuntimeError: broken"
    assert 'raise RuntimeError("broken")' in done.traceback_before_done

    text = show(router.config_path, done.id)
    assert re.search(r"^  status +done$", text, re.M)
    assert re.search(r"^  last_error +-$", text, re.M)
    assert re.search(r"^  error_before_done +gave up after 1 attempts: RuntimeError: broken$",
                     text, re.M)
    assert "\n  traceback_before_done:\n    Traceback (most recent call last):\n" in text
    assert "last_traceback:" not in text
    [as_json] = cli_json("deliveries", "show", str(done.id), config=router.config_path)
    assert (as_json["last_error"], as_json["error_before_done"]) == ("", done.error_before_done)


class Unbuildable:
    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        pass

    def __init__(self, settings: Settings) -> None:
        raise OSError("no such printer")


def test_a_plugin_that_cannot_be_built_carries_its_own_traceback(
    arrears_router: RouterFactory,
) -> None:
    with pytest.raises(RegistryError, match="the plugin failed to build") as caught:
        arrears_router({"u": {}}, classes={"u": Unbuildable})
    cause = caught.value.__cause__
    assert isinstance(cause, OSError)
    innermost = traceback.extract_tb(cause.__traceback__)[-1]
    assert (innermost.filename, innermost.name) == (__file__, "__init__")
