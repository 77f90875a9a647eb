"""``arrears-router bench --reconcile N``: how long ``arrears-router reconcile`` takes on a
day of N payments, all of them in the bill and in the store.

A temporary SQLite store is filled with N payments of yesterday (CST), received a few
seconds after each was paid, through the store's own API; a bill of the same N payments is
written in WeChat's format (every column, a backtick before each value, the summary). The
run then times what the command does before it keeps the report: reading the bill, reading
the day's payments from the store, and comparing them.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec

from arrears_router.bench.report import progress
from arrears_router.payment import CST, ArrearsPayment, parse_time_end
from arrears_router.reconcile.bill import read_bill_file
from arrears_router.reconcile.compare import bill_scope, compare
from arrears_router.reconcile.payments import stored_on, stored_with_ids
from arrears_router.store import NewEvent, open_store
from arrears_router.wire.notifier import sample_payload

__all__ = ["ReconcileBench", "run_reconcile_bench"]

MCH_ID = "1900000109"
APPID = "wx2421b1c4370ec43b"
FILL_CHUNK = 5000
BILL_HEADER = ",".join((
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
))
SUMMARY_HEADER = ",".join((
    "总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额", "手续费总金额",
    "订单总金额", "申请退款总金额",
))


class ReconcileBench(msgspec.Struct, frozen=True, kw_only=True):
    payments: int
    bill_bytes: int
    fill_seconds: float
    """Filling the store: set-up, not part of the figure."""
    read_bill_ms: float
    read_store_ms: float
    compare_ms: float
    total_ms: float
    matched: int
    ok: bool
    """Every payment matched, nothing else found."""


def run_reconcile_bench(payments: int, *, json: bool) -> None:
    if payments < 1:
        raise SystemExit("bench: --reconcile must be positive")
    result = asyncio.run(_bench(payments))
    if json:
        print(msgspec.json.encode(result).decode(), flush=True)
    else:
        print(f"reconcile: {result.payments} payments, a bill of {result.bill_bytes} bytes:"
              f" {result.total_ms:.1f} ms (bill {result.read_bill_ms:.1f} ms, store"
              f" {result.read_store_ms:.1f} ms, compare {result.compare_ms:.1f} ms);"
              f" {result.matched} matched{'' if result.ok else ', NOT all matched'}")
    if not result.ok:
        raise SystemExit(1)


async def _bench(count: int) -> ReconcileBench:
    day = datetime.now(CST).date() - timedelta(days=1)
    with tempfile.TemporaryDirectory(prefix="arrears-bench-reconcile-") as folder:
        url = f"sqlite:///{Path(folder) / 'router.db'}"
        progress(f"reconcile: filling a store with {count} payments of {day}")
        started = time.perf_counter()
        await _fill(url, _payments(count, day))
        fill_seconds = time.perf_counter() - started
        bill = Path(folder) / "bill.csv"
        bill_bytes = _bill_text(_payments(count, day)).encode()
        bill.write_bytes(bill_bytes)

        store = open_store(url, readonly=True)
        await store.open()
        try:
            started = time.perf_counter()
            read = read_bill_file(bill)
            mch_id, bill_day = bill_scope(read, None, None)
            bill_read = time.perf_counter()
            stored = await stored_on(store, mch_id, bill_day)
            elsewhere = await stored_with_ids(
                store, mch_id, (t.transaction_id for t in read.payments
                                if t.transaction_id not in stored))
            store_read = time.perf_counter()
            report = compare(read, mch_id=mch_id, day=bill_day, stored=stored,
                             elsewhere=elsewhere, bill_name=bill.name, made_at=datetime.now(UTC))
            done = time.perf_counter()
        finally:
            await store.close()
    return ReconcileBench(
        payments=count, bill_bytes=len(bill_bytes),
        fill_seconds=round(fill_seconds, 2),
        read_bill_ms=round((bill_read - started) * 1000, 1),
        read_store_ms=round((store_read - bill_read) * 1000, 1),
        compare_ms=round((done - store_read) * 1000, 1),
        total_ms=round((done - started) * 1000, 1), matched=report.counts.matched,
        ok=report.ok and report.counts.matched == count and not report.other_trades,
    )


def _payments(count: int, day: date) -> Iterator[ArrearsPayment]:
    """``count`` payments of ``day``, one every few seconds from midnight, 1.00 to 9.99
    yuan."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=CST)
    step = 86_399 / count
    for n in range(count):
        paid = midnight + timedelta(seconds=int(n * step))
        time_end = paid.strftime("%Y%m%d%H%M%S")
        yield msgspec.convert({
            **sample_payload(f"42{n:026d}", total_fee=100 + n % 900, time_end=time_end,
                             openid=f"oRider{n:022d}"),
            "appid": APPID, "mch_id": MCH_ID, "paid_at": parse_time_end(time_end),
        }, ArrearsPayment)


async def _fill(url: str, payments: Iterator[ArrearsPayment]) -> None:
    store = open_store(url)
    await store.open()
    try:
        chunk: list[NewEvent] = []
        for payment in payments:
            assert payment.paid_at is not None
            received_at = (payment.paid_at + timedelta(seconds=3)).astimezone(UTC)
            chunk.append(NewEvent.of(payment, b"{}", received_at))
            if len(chunk) == FILL_CHUNK:
                await asyncio.gather(*(store.accept(event) for event in chunk))
                chunk = []
        await asyncio.gather(*(store.accept(event) for event in chunk))
    finally:
        await store.close()


def _bill_text(payments: Iterator[ArrearsPayment]) -> str:
    lines = [BILL_HEADER]
    total = count = 0
    for payment in payments:
        assert payment.paid_at is not None
        yuan = f"{payment.total_fee // 100}.{payment.total_fee % 100:02d}"
        values = (payment.paid_at.strftime("%Y-%m-%d %H:%M:%S"), payment.appid, payment.mch_id,
                  "0", "", payment.transaction_id, payment.repay_no, payment.openid, "JSAPI",
                  "SUCCESS", "OTHERS", "CNY", yuan, "0.00", "0", "0", "0.00", "0.00", "", "",
                  "乘车码欠费", "", "0.00000", "0.60%", yuan, "0.00", "")
        lines.append(",".join(f"`{value}" for value in values))
        total += payment.total_fee
        count += 1
    money = f"{total // 100}.{total % 100:02d}"
    lines += [SUMMARY_HEADER,
              ",".join(f"`{v}" for v in (count, money, "0.00", "0.00", "0.00000", money, "0.00"))]
    return "\n".join(lines) + "\n"
