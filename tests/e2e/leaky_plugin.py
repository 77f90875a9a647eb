"""A plugin that logs what it never should, every way it can: the rider's openid and phone,
the merchant's key and its own token, through ``delivery.log``, a library's logger, an
exception's traceback and a dead delivery's error. The router's logs must mask all of it.
"""

from __future__ import annotations

import logging

import msgspec

from arrears_router import ArrearsPayment, Delivery, PermanentError, RetryableError, hookimpl

vendor = logging.getLogger("vendor_sms_sdk")
"""A third-party library's logger: not the router's, not the plugin's."""


class Leaky:
    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        api_token: str
        """Its own secret, found in the config by its name."""
        say: str
        """Logged as if harmless: the tests put a merchant's key here."""
        phone: str

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        s, spaced = self.s, f"{self.s.phone[:3]} {self.s.phone[3:7]} {self.s.phone[7:]}"
        delivery.log.info("texting %s at %s (%s, +86-%s), signing with %s and %s",
                          payment.openid, s.phone, spaced, s.phone, s.say, s.api_token)
        vendor.warning("POST https://sms:%s@sms.example/send?access_token=%s&to=86%s",
                       s.api_token, s.api_token, s.phone)
        try:
            raise ValueError(f"bad number {s.phone} for {payment.openid}, key {s.say}")
        except ValueError:
            delivery.log.exception("lookup failed")
        tx = payment.transaction_id
        if tx.endswith("-DEAD"):
            raise PermanentError(f"refused {s.phone} of {payment.openid} with {s.api_token}")
        if tx.endswith("-RETRY") and delivery.attempt == 1:
            raise RetryableError(f"busy sending to {s.phone}", retry_after=0.05)
        return f"texted {s.phone}"

    @hookimpl
    def delivery_dead(self, payment: ArrearsPayment, delivery: Delivery, error: str) -> None:
        delivery.log.error("gave up on %s: %s", payment.openid, error)
