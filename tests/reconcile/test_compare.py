"""A bill against a real SQLite store's payments: every category found exactly, payments
belonging to the day of their time_end, whenever they were received."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from arrears_router import ArrearsPayment, ReconcileLine, ReconcileReport
from arrears_router.payment import parse_time_end
from arrears_router.reconcile.bill import BillError, read_bill
from arrears_router.reconcile.compare import bill_scope
from arrears_router.reconcile.run import reconcile
from arrears_router.store import NewEvent, open_store
from arrears_router.wire.notifier import sample_payload
from tests.reconcile.bills import Trade, bill_bytes, refund_of

DAY = date(2026, 11, 25)
MCH = "1900000201"


def payment(transaction_id: str, total_fee: int, time_end: str,
            mch_id: str = MCH) -> ArrearsPayment:
    return msgspec.convert({**sample_payload(transaction_id, total_fee=total_fee,
                                             time_end=time_end),
                            "appid": "wx1", "mch_id": mch_id,
                            "paid_at": parse_time_end(time_end)}, ArrearsPayment)


def received(time_end: str, after: timedelta = timedelta(seconds=2)) -> datetime:
    paid = parse_time_end(time_end)
    assert paid is not None
    return (paid + after).astimezone(UTC)


def run(tmp_path: Path, stored: list[tuple[ArrearsPayment, datetime]], trades: list[Trade],
        mch_id: str | None = None, day: date | None = None) -> ReconcileReport:
    async def go() -> ReconcileReport:
        url = f"sqlite:///{tmp_path / 'router.db'}"
        store = open_store(url)
        await store.open()
        try:
            for paid, at in stored:
                await store.accept(NewEvent.of(paid, b"{}", at))
            bill = read_bill(bill_bytes(trades))
            merchant, bill_day = bill_scope(bill, mch_id, day)
            return await reconcile(store, bill, mch_id=merchant, day=bill_day,
                                   bill_name="bill.csv", made_at=datetime.now(UTC))
        finally:
            await store.close()

    return asyncio.run(go())


def ids(lines: Sequence[ReconcileLine]) -> list[str]:
    return [line.transaction_id for line in lines]


def test_every_category_is_found_exactly(tmp_path: Path) -> None:
    matched = Trade("T-MATCHED", "3.00", "2026-11-25 08:00:00")
    differs = Trade("T-DIFFERS", "4.50", "2026-11-25 09:00:00", order_yuan="5.00")
    missing = Trade("T-MISSING", "2.00", "2026-11-25 10:00:00", openid="oMissingRider")
    stored = [
        (payment("T-MATCHED", 300, "20261125080000"), received("20261125080000")),
        (payment("T-DIFFERS", 500, "20261125090000"), received("20261125090000")),
        (payment("T-UNEXPECTED", 700, "20261125110000"), received("20261125110000")),
    ]
    report = run(tmp_path, stored, [matched, differs, missing, refund_of(matched)])

    assert (report.mch_id, report.day, report.bill_lines) == (MCH, "2026-11-25", 4)
    assert msgspec.structs.asdict(report.counts) == {
        "matched": 1, "missing": 1, "unexpected": 1, "amount_differs": 1, "other_trades": 1}
    assert report.matched_fen == 300
    assert not report.ok
    (gone,) = report.missing
    assert (gone.transaction_id, gone.bill_line, gone.bill_fen, gone.stored_fen, gone.openid,
            gone.time) == ("T-MISSING", 4, 200, None, "oMis****ider", "2026-11-25 10:00:00")
    (extra,) = report.unexpected
    assert (extra.transaction_id, extra.stored_fen, extra.bill_line, extra.time) == (
        "T-UNEXPECTED", 700, None, "20261125110000")
    assert extra.event_id is not None
    (other,) = report.amount_differs
    assert (other.bill_fen, other.bill_order_fen, other.stored_fen) == (450, 500, 500)
    (refund,) = report.other_trades
    assert (refund.transaction_id, refund.status, refund.refund_fen, refund.bill_line) == (
        "T-MATCHED", "REFUND", 300, 5)


def test_all_matched_is_ok(tmp_path: Path) -> None:
    stored = [(payment(f"T{n}", 100 + n, f"2026112510{n:02d}00"),
               received(f"2026112510{n:02d}00")) for n in range(5)]
    trades = [Trade(f"T{n}", f"1.{n:02d}", f"2026-11-25 10:{n:02d}:00") for n in range(5)]
    report = run(tmp_path, stored, trades)
    assert report.ok
    assert (report.counts.matched, report.matched_fen) == (5, 510)


def test_a_payment_belongs_to_the_day_it_was_paid_not_received(tmp_path: Path) -> None:
    late = "20261125235950"
    stored = [
        # retried by WeChat past midnight, 20 hours later: still the 25th's
        (payment("T-LATE", 300, late), received(late, timedelta(hours=20))),
        # paid on the 26th a second after midnight: not the 25th's, so not unexpected
        (payment("T-NEXT-DAY", 300, "20261126000001"), received("20261126000001")),
        # paid on the 24th, received on the 25th: not the 25th's either
        (payment("T-DAY-BEFORE", 300, "20261124235959"),
         received("20261124235959", timedelta(minutes=5))),
        # another merchant's payment of the day is none of this bill's business
        (payment("T-OTHER-MCH", 300, "20261125120000", mch_id="1900000999"),
         received("20261125120000")),
    ]
    report = run(tmp_path, stored, [Trade("T-LATE", "3.00", "2026-11-25 23:59:50")])
    assert report.ok
    assert report.counts.matched == 1


def test_a_bill_payment_stored_outside_the_days_window_is_not_missing(tmp_path: Path) -> None:
    # Re-ingested from quarantine a week later, or its time_end on another day: stored all
    # the same, found by its transaction_id.
    stored = [(payment("T-REINGESTED", 300, "20261125100000"),
               received("20261125100000", timedelta(days=7))),
              (payment("T-ODD-TIME", 300, "20261124100000"), received("20261124100000"))]
    trades = [Trade("T-REINGESTED", "3.00", "2026-11-25 10:00:00"),
              Trade("T-ODD-TIME", "3.00", "2026-11-25 10:00:01")]
    report = run(tmp_path, stored, trades)
    assert report.ok
    assert report.counts.matched == 2


def test_the_merchant_and_day_are_the_bills_own_unless_given() -> None:
    bill = read_bill(bill_bytes([Trade("T1"), refund_of(Trade("T1"), time="2026-11-26 00:10:00")]))
    assert bill_scope(bill, None, None) == (MCH, DAY)  # the refund's time does not count
    assert bill_scope(bill, MCH, date(2026, 11, 26)) == (MCH, date(2026, 11, 26))


@pytest.mark.parametrize(("trades", "mch_id", "day", "message"), [
    ([Trade("T1"), Trade("T2", mch_id="1900000999")], None, None,
     "the bill has trades of merchants 1900000201, 1900000999: choose one with --merchant"),
    ([Trade("T1"), Trade("T2", mch_id="1900000999")], MCH, None,
     "line 3: a trade of merchant 1900000999, in the bill of 1900000201"),
    ([], None, DAY, "the bill has no trades: say whose it is with --merchant"),
    ([], MCH, None, "the bill has no payments: say which day it is with --date"),
    ([Trade("T1"), Trade("T2", time="2026-11-26 08:00:00")], None, None,
     "the bill's payments are of 2026-11-25 to 2026-11-26: say which day to reconcile with"
     " --date"),
])
def test_a_bill_that_does_not_say_what_it_is_of_is_refused(
        trades: list[Trade], mch_id: str | None, day: date | None, message: str) -> None:
    with pytest.raises(BillError) as caught:
        bill_scope(read_bill(bill_bytes(trades)), mch_id, day)
    assert str(caught.value) == message


def test_an_empty_bill_of_a_given_day_finds_every_stored_payment_unexpected(
        tmp_path: Path) -> None:
    stored = [(payment("T1", 300, "20261125100000"), received("20261125100000"))]
    report = run(tmp_path, stored, [], mch_id=MCH, day=DAY)
    assert ids(report.unexpected) == ["T1"]
    assert not report.ok
