"""The protocol's field names as the console shows them: English (the wire's own) and Chinese.

WeChat's document is Chinese, and so are many of the operator's staff: a field shows both
names where the protocol has both. The Chinese names are WeChat Pay's usual ones for the
same fields (交易单号 for ``transaction_id``...), and the ride-code document's own words
for its fields (乘车码, 欠费单).
"""

from __future__ import annotations

__all__ = ["CHINESE"]

CHINESE: dict[str, str] = {
    # The request WeChat sends.
    "appid": "小程序ID",
    "mch_id": "商户号",
    "nonce_str": "随机字符串",
    "encrypted_data": "加密数据",
    "iv": "初始向量",
    "sign": "签名",
    # Its encrypted payload.
    "transaction_id": "交易单号",
    "total_fee": "支付金额",
    "openid": "用户标识",
    "out_user_id": "业主用户ID",
    "bank_type": "付款银行",
    "time_end": "支付完成时间",
    "repay_no": "欠费单号",
    "order_no": "乘车码订单号",
    "order": "订单详情",
    "attach": "附加数据",
    "base64_qrcode": "乘车码信息",
    "out_order_no": "业主订单号",
    # The reply.
    "errcode": "错误码",
    "errmsg": "错误信息",
}
"""A field's Chinese name, by its name on the wire."""
