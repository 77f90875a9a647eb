"""Reading WeChat Pay's daily trade bill (v2 ``downloadbill``, the ALL, SUCCESS or REFUND
kind) as downloaded: a header of Chinese column names, a line per trade with each value
behind a backtick, then, usually, a summary header and a summary line.

Columns are found by name, so a bill with fewer or other optional columns still reads. A
bill is read whole or not at all: any line that does not read is a :class:`BillError`
naming it, and so is a summary that does not add up (a bill cut short).
docs/reconcile.md states the format assumed.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import msgspec

from arrears_router.payment import CST

__all__ = ["PAID", "REFUND", "Bill", "BillError", "BillSummary", "BillTrade", "read_bill",
           "read_bill_file"]

PAID = "SUCCESS"
"""交易状态 of a payment. Every other status (REFUND, REVOKED...) is another trade."""
REFUND = "REFUND"

# Each field the reader needs, by the names WeChat has given its column: the first found
# is used. The settlement amount was 总金额 in early bills, WeChat says.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "time": ("交易时间",),
    "mch_id": ("商户号",),
    "transaction_id": ("微信订单号",),
    "status": ("交易状态",),
    "amount": ("应结订单金额", "应结订单总金额", "总金额"),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {
    "openid": ("用户标识",),
    "out_trade_no": ("商户订单号",),
    "refund": ("退款金额", "总退款金额"),
    "refund_id": ("微信退款单号",),
    "order_amount": ("订单金额",),
}
_SUMMARY_FIRST = "总交易单数"
_SUMMARY_AMOUNT = ("应结订单总金额", "总交易额")
_SUMMARY_REFUND = ("退款总金额", "总退款金额")
_YUAN = re.compile(r"(\d{1,15})\.(\d\d)")
_TIME_SHAPE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


class BillError(ValueError):
    """The file is not a trade bill that reads whole; the message names the line."""


class BillTrade(msgspec.Struct, frozen=True, kw_only=True):
    """One detail line of the bill."""

    line: int
    time: datetime
    """交易时间, in CST: a payment's time, or when a refund was asked for."""
    time_text: str
    mch_id: str
    transaction_id: str
    status: str
    amount_fen: int
    """应结订单金额: what the merchant is settled for the order."""
    openid: str = ""
    out_trade_no: str = ""
    refund_fen: int = 0
    refund_id: str = ""
    order_amount_fen: int | None = None


class BillSummary(msgspec.Struct, frozen=True, kw_only=True):
    line: int
    trades: int
    amount_fen: int
    refund_fen: int | None


class Bill(msgspec.Struct, frozen=True, kw_only=True):
    trades: tuple[BillTrade, ...]
    summary: BillSummary | None
    encoding: str
    sha256: str

    @property
    def payments(self) -> list[BillTrade]:
        return [trade for trade in self.trades if trade.status == PAID]


def read_bill_file(path: str | Path) -> Bill:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BillError(f"cannot read {path}: {exc.strerror or exc}") from None
    return read_bill(data)


def read_bill(data: bytes) -> Bill:
    """The bill in ``data``: UTF-8 (with or without a byte-order mark), else GBK."""
    text, encoding = _decode(data)
    lines = text.split("\n")
    header = _values(lines[0])
    if not any(header):
        raise BillError("line 1: empty: a trade bill starts with its header")
    columns = _Columns(header)
    trades: list[BillTrade] = []
    summary: BillSummary | None = None
    number = 1
    while number < len(lines):
        number += 1
        text = lines[number - 1]
        if not text.strip():
            continue
        fields = text.split(",")
        if _clean(fields[0]) == _SUMMARY_FIRST:
            summary, number = _summary(_values(text), lines, number)
            break
        trades.append(columns.trade(fields, number))
    bill = Bill(trades=tuple(trades), summary=summary, encoding=encoding,
                sha256=hashlib.sha256(data).hexdigest())
    _check_unique(bill.payments)
    if summary is not None:
        _check_summary(bill.trades, summary)
    return bill


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[len(codecs.BOM_UTF8):].decode("utf-8"), "utf-8"
        except UnicodeDecodeError as exc:
            raise BillError(f"line {_line_of(data, exc.start)}: not UTF-8, though the file"
                            " starts with UTF-8's byte-order mark") from None
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc.start
    try:  # GB18030 reads all of GBK, and is as strict about what is not text
        return data.decode("gb18030"), "gbk"
    except UnicodeDecodeError as exc:
        # The encoding that read further is the bill's, most likely: name where it stopped.
        where = _line_of(data, max(utf8_error, exc.start))
        raise BillError(f"line {where}: neither UTF-8 nor GBK text: a bill is one or the"
                        " other") from None


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _values(line: str) -> list[str]:
    return [_clean(value) for value in line.split(",")]


def _clean(value: str) -> str:
    """A value as written: WeChat puts a backtick before each, to keep spreadsheets from
    reading numbers into them; a bill saved again by one may have lost them."""
    return value.strip().removeprefix("`")


class _Columns:
    """Where each field the reader needs is, in the header's order."""

    def __init__(self, header: Sequence[str]) -> None:
        self.width = len(header)
        seen: dict[str, int] = {}
        for index, name in enumerate(header):
            if name in seen:
                raise BillError(f"line 1: the column {name} is there twice")
            seen[name] = index
        missing = [names[0] for names in _REQUIRED.values() if not any(n in seen for n in names)]
        if missing:
            raise BillError(f"line 1: not a trade bill's header: no column {', '.join(missing)}")
        self.index = {field: next(seen[n] for n in names if n in seen)
                      for field, names in (*_REQUIRED.items(), *_OPTIONAL.items())
                      if any(n in seen for n in names)}
        self.names = {field: header[index] for field, index in self.index.items()}

    def trade(self, fields: Sequence[str], line: int) -> BillTrade:
        """The trade of a detail line, split at its commas: only the values needed are
        cleaned, the line's cost in a bill of many thousands."""
        if len(fields) != self.width:
            raise BillError(f"line {line}: {len(fields)} values where the header has"
                            f" {self.width} columns: the line is cut short or broken")
        field = {name: _clean(fields[index]) for name, index in self.index.items()}
        if not field["transaction_id"]:
            raise BillError(f"line {line}: no {self.names['transaction_id']}")
        time = _time(field["time"])
        if time is None:
            raise BillError(f"line {line}: {self.names['time']} {field['time']!r} is not a time"
                            " (YYYY-MM-DD HH:MM:SS)")
        order_amount = field.get("order_amount")
        return BillTrade(
            line=line, time=time, time_text=field["time"], mch_id=field["mch_id"],
            transaction_id=field["transaction_id"], status=field["status"],
            amount_fen=self._fen(field, "amount", line),
            openid=field.get("openid", ""), out_trade_no=field.get("out_trade_no", ""),
            refund_fen=self._fen(field, "refund", line) if field.get("refund") else 0,
            refund_id=field.get("refund_id", ""),
            order_amount_fen=self._fen(field, "order_amount", line) if order_amount else None,
        )

    def _fen(self, field: dict[str, str], name: str, line: int) -> int:
        amount = _fen_of(field[name])
        if amount is None:  # the message is made only then: this runs thrice a line
            raise _not_an_amount(f"line {line}: {self.names[name]}", field[name])
        return amount


def _time(text: str) -> datetime | None:
    """``YYYY-MM-DD HH:MM:SS`` in CST. fromisoformat, in C, is many times strptime's speed;
    the shape is checked first, as it reads other ISO forms too."""
    if _TIME_SHAPE.fullmatch(text) is None:
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=CST)
    except ValueError:  # the 31st of November
        return None


def _fen_of(text: str) -> int | None:
    """An amount in yuan with two decimals (``4.50``), in fen; None if it is not one."""
    found = _YUAN.fullmatch(text)
    return None if found is None else int(found[1]) * 100 + int(found[2])


def _fen(text: str, where: str) -> int:
    amount = _fen_of(text)
    if amount is None:
        raise _not_an_amount(where, text)
    return amount


def _not_an_amount(where: str, text: str) -> BillError:
    return BillError(f"{where} {text!r} is not an amount in yuan with two decimals")


def _summary(header: Sequence[str], lines: Sequence[str], number: int
             ) -> tuple[BillSummary, int]:
    """The summary whose header is line ``number``, and the last line read."""
    header_line = number
    while number < len(lines) and not any(_values(lines[number])):
        number += 1
    if number >= len(lines):
        raise BillError(f"line {header_line}: a summary header with no summary line after it:"
                        " the bill is cut short")
    number += 1
    values = _values(lines[number - 1])
    if len(values) != len(header):
        raise BillError(f"line {number}: {len(values)} values where the summary header has"
                        f" {len(header)}: the line is cut short or broken")
    for rest in range(number, len(lines)):
        if any(_values(lines[rest])):
            raise BillError(f"line {rest + 1}: text after the summary")
    field = dict(zip(header, values, strict=True))
    where = f"line {number}:"
    count = field[_SUMMARY_FIRST]
    if not count.isdigit():
        raise BillError(f"{where} {_SUMMARY_FIRST} {count!r} is not a count")
    amount = next((name for name in _SUMMARY_AMOUNT if name in field), None)
    if amount is None:
        raise BillError(f"line {header_line}: the summary has no column {_SUMMARY_AMOUNT[0]}")
    refund = next((name for name in _SUMMARY_REFUND if name in field), None)
    return BillSummary(
        line=number, trades=int(count), amount_fen=_fen(field[amount], f"{where} {amount}"),
        refund_fen=None if refund is None else _fen(field[refund], f"{where} {refund}"),
    ), number


def _check_unique(payments: Sequence[BillTrade]) -> None:
    first: dict[str, int] = {}
    for trade in payments:
        seen = first.setdefault(trade.transaction_id, trade.line)
        if seen != trade.line:
            raise BillError(f"line {trade.line}: payment {trade.transaction_id} is on line"
                            f" {seen} already")


def _check_summary(trades: Sequence[BillTrade], summary: BillSummary) -> None:
    """The summary against the lines: a bill cut short (a download broken off, a line lost)
    must not pass for a day with fewer payments."""
    where = f"line {summary.line}: the summary"
    if summary.trades != len(trades):
        raise BillError(f"{where} counts {summary.trades} trades, the bill has {len(trades)}"
                        " lines of them: it is incomplete")
    # Settled amounts are those of the payments; a refund's line repeats its payment's.
    amount = sum(trade.amount_fen for trade in trades if trade.status != REFUND)
    if summary.amount_fen != amount:
        raise BillError(f"{where} totals {_yuan(summary.amount_fen)} yuan settled, its lines"
                        f" {_yuan(amount)}: it is incomplete")
    refunded = sum(trade.refund_fen for trade in trades)
    if summary.refund_fen is not None and summary.refund_fen != refunded:
        raise BillError(f"{where} totals {_yuan(summary.refund_fen)} yuan refunded, its lines"
                        f" {_yuan(refunded)}: it is incomplete")


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"
