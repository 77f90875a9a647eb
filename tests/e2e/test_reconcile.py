"""``arrears-router reconcile``, end to end: payments stored by the real ``serve`` over its
HTTP callback, WeChat's trade bill of the day built by the test in the documented format,
the command run as an operator runs it; its report kept (``reconcile history``) and given
to a plugin through the ``reconciled`` hook. On SQLite, and on PostgreSQL when the tests
have one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from arrears_router import CST, ReconcileReport, hookimpl
from arrears_router.config import load_config
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import RouterProcess, cli, json_lines, postgres_schema, python_path, write_config
from tests.reconcile.bills import Trade, bill_bytes, refund_of

REPO = Path(__file__).resolve().parents[2]
ENV = python_path(REPO)
"""The plugins below are loaded by `use = "tests.e2e.test_reconcile:..."`."""
MERCHANT = {
    "appid": "wxe2e0000000hmac01",
    "mch_id": "1900000201",
    "sign_key": "e2eHmacSignKey0123456789abcdefAB",
    "aes_key": "e2e-aes-256-key-for-tests-only-0",
}


class ReportCatcher:
    """Writes each report it is told of to ``directory/report-ID.json``."""

    name = "catcher"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        directory: str

    def __init__(self, settings: Settings) -> None:
        self.directory = Path(settings.directory)

    @hookimpl
    def reconciled(self, report: ReconcileReport) -> None:
        path = self.directory / f"report-{report.id}.json"
        path.write_bytes(msgspec.json.encode(report))


class FailingCatcher:
    """Fails whenever it is told of a report: the command's exit status must not change."""

    name = "failing"

    @hookimpl
    async def reconciled(self, report: ReconcileReport) -> None:
        raise RuntimeError(f"pager down, report {report.id} not sent")


class Site:
    """A router's config, its ``serve`` and the folder the catcher writes to."""

    def __init__(self, directory: Path, store: dict[str, str],
                 start: Callable[..., RouterProcess]) -> None:
        self.directory = directory
        self.caught = directory / "caught"
        self.caught.mkdir()
        self.config = write_config(
            directory / "config.toml", merchants=(MERCHANT,), store=store,
            server={"host": "127.0.0.1", "port": 0},
            plugins={"catcher": {"use": "tests.e2e.test_reconcile:ReportCatcher",
                                 "directory": str(self.caught)},
                     "failing": {"use": "tests.e2e.test_reconcile:FailingCatcher"}},
        )
        self.server = start(self.config, "serve", "--port", "0", env=ENV)
        self.notifier = Notifier(load_config(self.config).merchants[0])
        self.day = datetime.now(CST).date()
        """Today: the payments are received today, as WeChat sends them."""

    def pay(self, transaction_id: str, fen: int, time_end: str) -> None:
        body = self.notifier.notification(
            sample_payload(transaction_id, total_fee=fen, time_end=time_end))
        reply = httpx.post(f"{self.server.url}/ridecode/arrears", content=body, timeout=30)
        assert reply.json()["errcode"] == 0, reply.text

    def at(self, clock: str) -> tuple[str, str]:
        """``time_end`` and the bill's 交易时间 of a time of the day."""
        moment = datetime.fromisoformat(f"{self.day}T{clock}")
        return moment.strftime("%Y%m%d%H%M%S"), moment.strftime("%Y-%m-%d %H:%M:%S")

    def bill(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def reconcile(self, *args: str) -> Any:
        return cli("reconcile", *args, config=self.config, env=ENV, cwd=self.directory)

    def caught_reports(self) -> list[dict[str, Any]]:
        return [json.loads(path.read_text(encoding="utf-8"))
                for path in sorted(self.caught.glob("report-*.json"))]


@pytest.fixture(params=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, tmp_path: Path,
         start_process: Callable[..., RouterProcess]) -> Iterator[Site]:
    if request.param == "sqlite":
        yield Site(tmp_path, {"url": "sqlite:///router.db"}, start_process)
        return
    with postgres_schema() as url:
        yield Site(tmp_path, {"url": url}, start_process)


def test_a_days_bill_sorts_every_payment_and_the_plugin_gets_the_kept_report(
        site: Site) -> None:
    (matched_end, matched_time), (differs_end, differs_time) = site.at("08:00:00"), site.at(
        "09:00:00")
    unexpected_end, _ = site.at("11:00:00")
    _, missing_time = site.at("10:00:00")
    yesterday = (datetime.now(CST) - timedelta(days=1)).strftime("%Y%m%d120000")
    site.pay("4200000000000000000000000001", 300, matched_end)
    site.pay("4200000000000000000000000002", 500, differs_end)
    site.pay("4200000000000000000000000004", 700, unexpected_end)
    site.pay("4200000000000000000000000005", 900, yesterday)  # another day's: not listed
    matched = Trade("4200000000000000000000000001", "3.00", matched_time)
    trades = [
        matched,
        Trade("4200000000000000000000000002", "4.50", differs_time),
        Trade("4200000000000000000000000003", "2.00", missing_time, openid="oMissingRider01"),
        refund_of(matched, time=f"{site.day} 18:00:00"),
    ]
    bill = site.bill("bill-gbk.csv", bill_bytes(trades, encoding="gbk"))

    result = site.reconcile(str(bill), "--json")

    assert result.returncode == 1, result.stderr
    (report,) = json_lines(result.stdout)
    assert report["counts"] == {"matched": 1, "missing": 1, "unexpected": 1,
                                "amount_differs": 1, "other_trades": 1}
    assert (report["mch_id"], report["day"], report["id"]) == (
        "1900000201", str(site.day), 1)
    assert [line["transaction_id"] for line in report["missing"]] == [
        "4200000000000000000000000003"]
    assert [line["transaction_id"] for line in report["unexpected"]] == [
        "4200000000000000000000000004"]
    assert [(line["transaction_id"], line["bill_fen"], line["stored_fen"])
            for line in report["amount_differs"]] == [
        ("4200000000000000000000000002", 450, 500)]
    assert [(line["status"], line["refund_fen"]) for line in report["other_trades"]] == [
        ("REFUND", 300)]
    # The plugin got the report as kept; the failing one changed nothing but the log.
    assert site.caught_reports() == [report]
    assert "pager down, report 1 not sent" in result.stderr

    history = json_lines(cli("reconcile", "history", "--json", config=site.config,
                             env=ENV, check=True).stdout)
    assert history == [report]


def test_a_matching_bill_exits_0_and_its_text_says_so(site: Site) -> None:
    end, time = site.at("07:30:00")
    site.pay("4200000000000000000000000011", 450, end)
    bill = site.bill("bill.csv", bill_bytes([Trade("4200000000000000000000000011", "4.50", time)],
                                            bom=True))

    result = site.reconcile(str(bill))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"reconcile 1900000201 {site.day}: ok: 1 matched (4.50 yuan), 0 missing, 0 unexpected,"
        " 0 amount differs; 0 other trade(s) listed apart (report 1)"]
    assert [r["id"] for r in site.caught_reports()] == [1]


def test_the_text_lists_each_payment_to_look_at(site: Site) -> None:
    _, time = site.at("10:00:00")
    bill = site.bill("bill.csv", bill_bytes(
        [Trade("4200000000000000000000000021", "2.00", time, openid="oMissingRider0001")]))

    result = site.reconcile(str(bill))

    assert result.returncode == 1
    summary, missing = result.stdout.splitlines()
    assert "NOT OK: 0 matched (0.00 yuan), 1 missing" in summary
    assert missing.startswith("missing         line 2  4200000000000000000000000021  2.00 yuan")
    assert "oMissingRider0001" not in missing  # an openid is never printed whole


@pytest.mark.parametrize(("edit", "line"), [
    (lambda lines: [lines[0].replace("微信订单号", "订单号"), *lines[1:]], "line 1"),
    (lambda lines: [lines[0], lines[1][:40], *lines[2:]], "line 2"),
    (lambda lines: [lines[0], lines[1].replace("`3.00", "`3"), *lines[2:]], "line 2"),
])
def test_a_malformed_bill_exits_2_naming_its_line_and_makes_no_report(
        site: Site, edit: Callable[[list[str]], list[str]], line: str) -> None:
    _, time = site.at("10:00:00")
    lines = bill_bytes([Trade("4200000000000000000000000031", "3.00", time)]).decode().split(
        "\n")
    bill = site.bill("bad.csv", "\n".join(edit(lines)).encode())

    result = site.reconcile(str(bill))

    assert result.returncode == 2
    assert result.stderr.startswith(f"reconcile: {bill}: {line}: ")
    assert "no report made" in result.stderr
    assert result.stdout == ""
    assert site.caught_reports() == []
    history = cli("reconcile", "history", config=site.config, env=ENV, check=True)
    assert history.stdout == "no reconcile reports kept\n"
