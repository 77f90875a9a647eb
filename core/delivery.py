"""What a plugin gets with each payment: its delivery."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Delivery"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One plugin's turn at one payment."""

    id: int
    """The delivery's row in the store (``arrears-router deliveries show ID``)."""
    plugin: str
    attempt: int
    """1 on the first try; it grows with every retry and with a crash mid-delivery."""
    idempotency_key: str
    """The same for every attempt and replay of this payment for this plugin: dedupe on it."""
    settings: Any
    """The plugin's validated ``Settings`` from ``[plugins.NAME]``."""
    log: logging.Logger
    """A logger named for the plugin. Never log a phone number, a key or a full openid."""
    flags: list[str] = field(default_factory=list)

    def flag(self, reason: str) -> None:
        """Ask a person to look at this payment (an overpayment to refund, say). Once the
        attempt succeeds, every plugin's ``payment_flagged`` hook hears of it.
        """
        self.flags.append(reason)
