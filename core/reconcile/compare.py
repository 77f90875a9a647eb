"""Sorting a bill's payments and the stored ones into a report: matched, missing, unexpected,
of another amount; and the bill's other trades, listed apart.

A bill line and a stored payment are one payment when their merchant and transaction_id
(微信订单号) are the same; their amounts are the bill's 应结订单金额 and the stored
``total_fee``, both in fen.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from arrears_router.http import mask_openid
from arrears_router.reconcile.bill import PAID, Bill, BillError, BillTrade
from arrears_router.reconcile.report import ReconcileCounts, ReconcileLine, ReconcileReport
from arrears_router.store import EventRecord

__all__ = ["bill_scope", "compare"]


def bill_scope(bill: Bill, mch_id: str | None, day: date | None) -> tuple[str, date]:
    """The merchant and CST day to reconcile: those given, else the bill's own.

    :raises BillError: the bill has lines of another merchant than the one reconciled (a
        bill is a merchant's), or it cannot tell what it does not name.
    """
    merchants = {trade.mch_id for trade in bill.trades}
    if mch_id is None:
        if len(merchants) != 1:
            raise BillError("the bill has no trades: say whose it is with --merchant"
                            if not merchants else
                            f"the bill has trades of merchants {', '.join(sorted(merchants))}:"
                            " choose one with --merchant")
        mch_id = merchants.pop()
    if other := next((t for t in bill.trades if t.mch_id != mch_id), None):
        raise BillError(f"line {other.line}: a trade of merchant {other.mch_id}, in the bill of"
                        f" {mch_id}")
    if day is None:
        days = sorted({trade.time.date() for trade in bill.payments})
        if len(days) != 1:
            raise BillError("the bill has no payments: say which day it is with --date"
                            if not days else
                            f"the bill's payments are of {days[0]} to {days[-1]}: say which day"
                            " to reconcile with --date")
        day = days[0]
    return mch_id, day


def compare(bill: Bill, *, mch_id: str, day: date, stored: Mapping[str, EventRecord],
            elsewhere: Mapping[str, EventRecord], bill_name: str,
            made_at: datetime) -> ReconcileReport:
    """The report of ``bill`` against ``stored``, the merchant's payments of ``day``.

    :param elsewhere: stored payments of the bill's transaction_ids that are not in
        ``stored`` (paid on another day, or received later than the day's window).
    """
    matched_fen = matched = 0
    missing: list[ReconcileLine] = []
    differs: list[ReconcileLine] = []
    in_bill: set[str] = set()
    for trade in bill.payments:
        in_bill.add(trade.transaction_id)
        record = stored.get(trade.transaction_id) or elsewhere.get(trade.transaction_id)
        if record is None:
            missing.append(_bill_line(trade))
        elif record.payment.total_fee != trade.amount_fen:
            differs.append(_bill_line(trade, record))
        else:
            matched += 1
            matched_fen += trade.amount_fen
    unexpected = [_stored_line(record) for transaction_id, record in stored.items()
                  if transaction_id not in in_bill]
    unexpected.sort(key=lambda line: (line.time, line.transaction_id))
    others = [_bill_line(trade) for trade in bill.trades if trade.status != PAID]
    return ReconcileReport(
        mch_id=mch_id, day=day.isoformat(), made_at=made_at, bill=bill_name,
        bill_sha256=bill.sha256, bill_lines=len(bill.trades),
        counts=ReconcileCounts(matched=matched, missing=len(missing),
                               unexpected=len(unexpected), amount_differs=len(differs),
                               other_trades=len(others)),
        matched_fen=matched_fen, missing=tuple(missing), unexpected=tuple(unexpected),
        amount_differs=tuple(differs), other_trades=tuple(others),
    )


def _bill_line(trade: BillTrade, record: EventRecord | None = None) -> ReconcileLine:
    return ReconcileLine(
        transaction_id=trade.transaction_id, bill_line=trade.line, bill_fen=trade.amount_fen,
        bill_order_fen=trade.order_amount_fen,
        stored_fen=None if record is None else record.payment.total_fee,
        event_id=None if record is None else record.id, status=trade.status,
        time=trade.time_text, openid=mask_openid(trade.openid), out_trade_no=trade.out_trade_no,
        refund_fen=trade.refund_fen or None, refund_id=trade.refund_id,
    )


def _stored_line(record: EventRecord) -> ReconcileLine:
    payment = record.payment
    return ReconcileLine(transaction_id=payment.transaction_id, stored_fen=payment.total_fee,
                         event_id=record.id, time=payment.time_end,
                         openid=mask_openid(payment.openid))
