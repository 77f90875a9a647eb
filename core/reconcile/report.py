"""What a reconciliation found: the report kept in the store and given to plugins."""

from __future__ import annotations

from datetime import datetime

import msgspec

__all__ = ["ReconcileCounts", "ReconcileLine", "ReconcileReport"]


class ReconcileLine(msgspec.Struct, frozen=True, kw_only=True):
    """A payment or trade the report names: from the bill, from the store, or both."""

    transaction_id: str
    """微信订单号, the notification's ``transaction_id``."""
    bill_line: int | None = None
    """Its line in the bill file (the header is line 1); None when the bill lacks it."""
    bill_fen: int | None = None
    """The bill's 应结订单金额 (settlement amount), in fen; None when the bill lacks it."""
    bill_order_fen: int | None = None
    """The bill's 订单金额 (order amount) in fen, where the bill has that column: it differs
    from the settlement amount when a voucher paid part."""
    stored_fen: int | None = None
    """The stored payment's ``total_fee``; None when none is stored."""
    event_id: int | None = None
    """The stored payment's id (``arrears-router events show TRANSACTION_ID``)."""
    status: str = ""
    """The bill's 交易状态: ``SUCCESS`` for a payment, ``REFUND``, ``REVOKED``..."""
    time: str = ""
    """The bill's 交易时间 (CST) as written, else the stored payment's ``time_end``."""
    openid: str = ""
    """The bill's 用户标识, else the stored payment's ``openid``: masked (``oRid****0001``),
    as everywhere a report goes (the store, plugins, ``--json``)."""
    out_trade_no: str = ""
    """The bill's 商户订单号."""
    refund_fen: int | None = None
    """The bill's 退款金额 in fen, for a refund."""
    refund_id: str = ""
    """The bill's 微信退款单号, for a refund."""


class ReconcileCounts(msgspec.Struct, frozen=True, kw_only=True):
    matched: int
    missing: int
    unexpected: int
    amount_differs: int
    other_trades: int


class ReconcileReport(msgspec.Struct, frozen=True, kw_only=True):
    """A merchant's day: the payments of WeChat's trade bill against those stored.

    ``ok`` when nothing is missing, unexpected or of another amount; the other trades
    (refunds...) are listed apart and never count against it.
    """

    id: int = 0
    """Its number in ``arrears-router reconcile history``; 0 until it is kept."""
    mch_id: str
    day: str
    """The CST day reconciled, ``YYYY-MM-DD``."""
    made_at: datetime
    bill: str
    """The bill file, as the command was given it."""
    bill_sha256: str
    """Of the bill file's bytes: which download this report was made from."""
    bill_lines: int
    """The bill's trades (its detail lines), every status."""
    counts: ReconcileCounts
    matched_fen: int
    """The matched payments' total, in fen."""
    missing: tuple[ReconcileLine, ...] = ()
    """Paid according to the bill, never stored: the notification never arrived."""
    unexpected: tuple[ReconcileLine, ...] = ()
    """Stored as paid that day, but not in the bill."""
    amount_differs: tuple[ReconcileLine, ...] = ()
    """In both, with other amounts."""
    other_trades: tuple[ReconcileLine, ...] = ()
    """The bill's lines that are not payments (refunds, revoked payments...): listed only."""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.amount_differs)
