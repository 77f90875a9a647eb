"""WeChat's side of the wire: builds notifications exactly as WeChat's backend sends them.

One encoder serves ``simulate``, the benchmark and the tests, so all three speak the same
protocol that the router verifies.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import msgspec

from arrears_router.config import MerchantConfig
from arrears_router.wire.cipher import AesKey, parse_aes_key
from arrears_router.wire.signature import Signer, SignType, signed_fields

__all__ = ["Notifier", "sample_payload"]


def sample_payload(transaction_id: str, **overrides: Any) -> dict[str, Any]:
    """A plausible decrypted payload; fields given as keyword arguments replace its own."""
    payload: dict[str, Any] = {
        "out_user_id": "rider-0001",
        "openid": "oRider0000000000000000000001",
        "bank_type": "LQT",
        "total_fee": 300,
        "transaction_id": transaction_id,
        "time_end": "20261125093015",
        "repay_no": f"R{transaction_id}",
        "order_no": [f"O{transaction_id}-1", f"O{transaction_id}-2"],
        "order": [
            {"order_no": f"O{transaction_id}-{n}", "attach": "", "base64_qrcode": "",
             "out_order_no": f"BUS-{transaction_id}-{n}"}
            for n in (1, 2)
        ],
    }
    payload.update(overrides)
    return payload


class Notifier:
    """Signs and encrypts notifications for one merchant, as WeChat would."""

    def __init__(self, merchant: MerchantConfig, sign_type: SignType | None = None) -> None:
        self.appid = merchant.appid
        self.mch_id = merchant.mch_id
        self.sign_type = sign_type or merchant.sign_types[0]
        self._signer = Signer(merchant.sign_key)
        self._aes = AesKey(parse_aes_key(merchant.aes_key))

    def envelope(self, plaintext: bytes, **extra: Any) -> dict[str, Any]:
        """The request's fields, unsigned: ``extra`` adds or replaces top-level fields."""
        encrypted_data, iv = self._aes.encrypt(plaintext)
        fields: dict[str, Any] = {
            "appid": self.appid,
            "mch_id": self.mch_id,
            "nonce_str": secrets.token_hex(16),
            "encrypted_data": encrypted_data,
            "iv": iv,
        }
        fields.update(extra)
        return fields

    def sign(self, fields: Mapping[str, Any]) -> str:
        unsigned = {name: value for name, value in fields.items() if name != "sign"}
        return self._signer.sign(signed_fields(msgspec.json.encode(unsigned)), self.sign_type)

    def signed(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {**fields, "sign": self.sign(fields)}

    def notification(self, payload: Mapping[str, Any] | bytes, **extra: Any) -> bytes:
        """A complete request body for ``payload`` (a dict, or plaintext bytes as is)."""
        plaintext = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
        return msgspec.json.encode(self.signed(self.envelope(plaintext, **extra)))
