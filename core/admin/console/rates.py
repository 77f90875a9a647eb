"""Notifications accepted and refused per minute, for the overview.

The host's processes count every answer by errcode (``arrears_router.metrics``); the totals
only grow. A rate is the difference between two readings: each look at the overview reads
the totals and keeps the reading for a minute, and the rate is taken against the oldest
reading kept. The first look after the admin process starts has nothing to compare with.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import msgspec

from arrears_router.metrics import notification_totals

__all__ = ["IntakeRates", "Rates", "read_totals"]

WINDOW_S = 60.0
ACCEPTED = "0"
"""The errcode of an accepted notification; any other is a refusal."""


class Totals(msgspec.Struct, frozen=True):
    accepted: float
    refused: float


class Rates(msgspec.Struct, frozen=True, kw_only=True):
    accepted: float
    """Per minute."""
    refused: float
    over_s: float
    """How many seconds the rates are measured over (up to a minute)."""


def read_totals(directory: Path) -> Totals:
    """What the host's processes have answered so far, summed. Reads files: off the loop."""
    by_errcode = notification_totals(directory)
    accepted = by_errcode.pop(ACCEPTED, 0.0)
    return Totals(accepted, sum(by_errcode.values()))


class IntakeRates:
    def __init__(self, directory: Callable[[], Path]) -> None:
        """:param directory: the metrics folder the config names now."""
        self._directory = directory
        self._readings: deque[tuple[float, Totals]] = deque()

    async def now(self) -> Rates | None:
        """The rates since the oldest reading of the last minute; None on the first one."""
        totals = await asyncio.to_thread(read_totals, self._directory())
        at = time.monotonic()
        while self._readings and at - self._readings[0][0] > WINDOW_S:
            if len(self._readings) == 1:  # the last reading past the minute: still the base
                break
            self._readings.popleft()
        self._readings.append((at, totals))
        since, base = self._readings[0]
        if at - since <= 0:
            return None
        if totals.accepted < base.accepted or totals.refused < base.refused:
            self._readings = deque([(at, totals)])  # another metrics folder: start again
            return None
        per_minute = 60.0 / (at - since)
        return Rates(accepted=(totals.accepted - base.accepted) * per_minute,
                     refused=(totals.refused - base.refused) * per_minute, over_s=at - since)
