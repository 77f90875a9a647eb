"""What a delivery's attempt came to, and how outcomes are written: in batches.

An attempt ends done (with a note), failed (retried after a backoff or a ``Retry-After``,
until the plugin's ``max_attempts``) or dead at once (a ``PermanentError``).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from functools import partial

from arrears_router.http import describe_error as describe
from arrears_router.platform.registry import PluginPolicy
from arrears_router.store import ClaimedDelivery, DeliveryResult, DeliveryStatus, Store, StoreError

__all__ = ["OutcomeWriter", "Recorded", "backoff", "dead", "describe_error", "done", "failed"]

log = logging.getLogger("arrears_router.dispatch")

_TEXT_LIMIT = 2000
"""Characters kept of a note or an error."""


def backoff(policy: PluginPolicy, attempt: int) -> float:
    """Seconds before the retry after ``attempt``: doubling, capped, with jitter in its upper
    half so that a burst of failures does not come back as a burst of retries.
    """
    delay: float = min(policy.backoff_cap, policy.backoff * 2.0 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def describe_error(exc: BaseException) -> str:
    """A failed attempt's error as the delivery keeps it: the plugin kit's description (URLs
    cut to what may be shown), clipped."""
    return describe(exc)[:_TEXT_LIMIT]


Recorded = Callable[[bool | StoreError], None]
"""Told whether an outcome was recorded (False: its claim had lapsed), or why it was not."""


class OutcomeWriter:
    """Records the outcomes of the deliveries that end in one turn of the event loop with
    one write: under load, one transaction for many deliveries, not one each. Each is
    followed by a callback, not awaited, so a delivery's task ends with its call."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._open: list[tuple[DeliveryResult, Recorded]] | None = None
        """The batch that outcomes join until its write begins."""
        self._writing: set[asyncio.Task[list[bool]]] = set()

    def record(self, result: DeliveryResult, then: Recorded) -> None:
        """Write ``result`` with the others of this turn, then call ``then`` with the news."""
        batch = self._open
        if batch is None:  # the write begins at the next turn, with all that came by then
            batch = []
            task = asyncio.get_running_loop().create_task(self._write(batch))
            self._writing.add(task)
            task.add_done_callback(partial(self._written, batch))
            self._open = batch
        batch.append((result, then))

    async def drain(self) -> None:
        """Wait for the outcomes handed in so far to be written."""
        if self._writing:
            await asyncio.wait(set(self._writing))

    async def _write(self, batch: list[tuple[DeliveryResult, Recorded]]) -> list[bool]:
        self._open = None  # what comes from now on joins the next batch
        return await self._store.finish([result for result, _ in batch])

    def _written(self, batch: list[tuple[DeliveryResult, Recorded]],
                 task: asyncio.Task[list[bool]]) -> None:
        """Tell each of the batch how its write went, however the task ended: every slot a
        delivery holds is freed through here."""
        self._writing.discard(task)
        if self._open is batch:  # cancelled before it began
            self._open = None
        outcomes: Sequence[bool | StoreError]
        if task.cancelled():
            outcomes = [StoreError("the write was cancelled")] * len(batch)
        elif (exc := task.exception()) is not None:
            if not isinstance(exc, StoreError):  # the store broke its contract: a bug
                log.error("cannot record %d outcomes", len(batch), exc_info=exc)
            error = exc if isinstance(exc, StoreError) else StoreError(f"{exc!r}")
            outcomes = [error] * len(batch)
        elif len(outcomes := task.result()) != len(batch):
            outcomes = [StoreError(f"the store answered {len(outcomes)} outcomes for"
                                   f" {len(batch)}")] * len(batch)
        for (_, then), outcome in zip(batch, outcomes, strict=True):
            try:
                then(outcome)
            except Exception:  # one delivery's bug must not keep the others' slots
                log.exception("after recording an outcome")


def done(claimed: ClaimedDelivery, note: str | None, flags: Sequence[str]) -> DeliveryResult:
    parts = ([note] if note else []) + [f"flagged: {f}" for f in flags]
    return DeliveryResult(id=claimed.id, token=claimed.token, status=DeliveryStatus.DONE,
                          note="; ".join(parts)[:_TEXT_LIMIT])


def dead(claimed: ClaimedDelivery, error: str) -> DeliveryResult:
    return DeliveryResult(id=claimed.id, token=claimed.token, status=DeliveryStatus.DEAD,
                          error=error)


def failed(claimed: ClaimedDelivery, plugin: str, policy: PluginPolicy, error: str,
           retry_after: float | None) -> DeliveryResult:
    """Retry later, or give up once the plugin's attempts are spent."""
    if claimed.attempt >= policy.max_attempts:
        return dead(claimed, f"gave up after {claimed.attempt} attempts: {error}")
    delay = backoff(policy, claimed.attempt) if retry_after is None else max(0.0, retry_after)
    log.info("delivery %d to %s failed (attempt %d), retry in %.1f s: %s",
             claimed.id, plugin, claimed.attempt, delay, error)
    return DeliveryResult(id=claimed.id, token=claimed.token, status=DeliveryStatus.PENDING,
                          retry_in=delay, error=error)
