"""Trade bills as WeChat Pay's v2 ``downloadbill`` writes them (docs/reconcile.md): the
header of Chinese column names, a line per trade with a backtick before each value, then the
summary header and line. Built here, from the documented format, never by the code read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ALL_COLUMNS = (
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "申请退款金额", "费率备注",
)
"""The ALL bill's columns."""
SUCCESS_COLUMNS = (
    "交易时间", "公众账号ID", "商户号", "特约商户号", "设备号", "微信订单号", "商户订单号",
    "用户标识", "交易类型", "交易状态", "付款银行", "货币种类", "应结订单金额", "代金券金额",
    "商品名称", "商户数据包", "手续费", "费率", "订单金额", "费率备注",
)
"""The SUCCESS bill's: no refund columns."""
SUMMARY_COLUMNS = ("总交易单数", "应结订单总金额", "退款总金额", "充值券退款总金额",
                   "手续费总金额", "订单总金额", "申请退款总金额")


@dataclass(frozen=True)
class Trade:
    transaction_id: str
    yuan: str = "3.00"
    time: str = "2026-11-25 09:30:15"
    mch_id: str = "1900000201"
    status: str = "SUCCESS"
    openid: str = "oRider0000000000000000000001"
    out_trade_no: str = ""
    refund_yuan: str = "0.00"
    refund_id: str = "0"
    order_yuan: str | None = None

    def values(self) -> dict[str, str]:
        return {
            "交易时间": self.time, "公众账号ID": "wxe2e0000000hmac01", "商户号": self.mch_id,
            "特约商户号": "0", "设备号": "", "微信订单号": self.transaction_id,
            "商户订单号": self.out_trade_no or f"R{self.transaction_id}",
            "用户标识": self.openid, "交易类型": "JSAPI", "交易状态": self.status,
            "付款银行": "OTHERS", "货币种类": "CNY", "应结订单金额": self.yuan,
            "总金额": self.yuan, "代金券金额": "0.00", "微信退款单号": self.refund_id,
            "商户退款单号": "0", "退款金额": self.refund_yuan, "充值券退款金额": "0.00",
            "退款类型": "ORIGINAL" if self.status == "REFUND" else "",
            "退款状态": "SUCCESS" if self.status == "REFUND" else "", "商品名称": "乘车码欠费",
            "商户数据包": "", "手续费": "0.01800", "费率": "0.60%",
            "订单金额": self.order_yuan or self.yuan,
            "申请退款金额": self.refund_yuan, "费率备注": "",
        }


def refund_of(trade: Trade, *, time: str = "2026-11-25 18:00:00") -> Trade:
    """The ALL bill's line of a refund of ``trade``: its payment's columns, and the refund's."""
    return Trade(trade.transaction_id, trade.yuan, time, trade.mch_id, "REFUND", trade.openid,
                 trade.out_trade_no, refund_yuan=trade.yuan,
                 refund_id=f"5030{trade.transaction_id}")


def fen(yuan: str) -> int:
    whole, _, cents = yuan.partition(".")
    return int(whole) * 100 + int(cents)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def bill_text(trades: Sequence[Trade], *, columns: Sequence[str] = ALL_COLUMNS,
              summary: bool = True, backticks: bool = True, newline: str = "\n") -> str:
    mark = "`" if backticks else ""
    lines = [",".join(columns)]
    lines += [",".join(f"{mark}{trade.values()[c]}" for c in columns) for trade in trades]
    if summary:
        settled = sum(fen(t.yuan) for t in trades if t.status != "REFUND")
        refunded = sum(fen(t.refund_yuan) for t in trades)
        ordered = sum(fen(t.order_yuan or t.yuan) for t in trades if t.status != "REFUND")
        totals = (str(len(trades)), yuan(settled), yuan(refunded), "0.00",
                  "0.00000", yuan(ordered), yuan(refunded))
        lines += [",".join(SUMMARY_COLUMNS), ",".join(f"`{v}" for v in totals)]
    return newline.join(lines) + newline


def bill_bytes(trades: Sequence[Trade], *, encoding: str = "utf-8", bom: bool = False,
               summary: bool = True) -> bytes:
    data = bill_text(trades, summary=summary).encode(encoding)
    return b"\xef\xbb\xbf" + data if bom else data
