"""The arrears payment as plugins and the store see it: every field WeChat sent, immutable."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Annotated

import msgspec

__all__ = ["CST", "ArrearsPayment", "Order", "parse_time_end"]

# WeChat states payment times in China Standard Time, which has no daylight saving.
CST = timezone(timedelta(hours=8), "CST")


class Order(msgspec.Struct, frozen=True, kw_only=True):
    """One ride-code order that the payment settles."""

    order_no: str
    attach: str = ""
    base64_qrcode: str = ""
    out_order_no: str = ""


class ArrearsPayment(msgspec.Struct, frozen=True, kw_only=True):
    """A rider's payment of arrears, decrypted and verified. Amounts are in fen (1/100 CNY)."""

    appid: str
    mch_id: str
    transaction_id: Annotated[str, msgspec.Meta(min_length=1)]
    total_fee: Annotated[int, msgspec.Meta(ge=0)]
    openid: str
    bank_type: str
    time_end: str
    """As sent; WeChat's example has 16 digits where the format says 14."""
    repay_no: str
    order_no: tuple[str, ...]
    order: tuple[Order, ...] = ()
    """Missing in WeChat's own example, so treated as empty when absent."""
    out_user_id: str = ""
    """The operator's own rider id; sent only when the registration callback is set up."""
    paid_at: datetime | None = None
    """``time_end`` read as CST from its first 14 digits; None when those are not a time."""


def parse_time_end(time_end: str) -> datetime | None:
    """``yyyyMMddHHmmss`` (extra trailing digits ignored) in CST, or None if it is not one."""
    digits = time_end[:14]
    if len(digits) != 14 or not (digits.isascii() and digits.isdigit()):
        return None
    # One int() and divmods, not strptime or six slices: this runs for every payment.
    date, clock = divmod(int(digits), 1_000_000)
    year, month_day = divmod(date, 10_000)
    month, day = divmod(month_day, 100)
    hour, minute_second = divmod(clock, 10_000)
    minute, second = divmod(minute_second, 100)
    try:
        return datetime(year, month, day, hour, minute, second, 0, CST)
    except ValueError:
        return None
