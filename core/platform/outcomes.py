"""What a delivery's attempt came to, and how outcomes are written: in batches.

An attempt ends done (with a note), failed (retried after a backoff or a ``Retry-After``,
until the plugin's ``max_attempts``) or dead at once (a ``PermanentError``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import traceback
from collections.abc import Callable, Iterator, Sequence
from functools import partial

from arrears_router.http import describe_error as describe
from arrears_router.platform.registry import PluginPolicy
from arrears_router.store import ClaimedDelivery, DeliveryResult, DeliveryStatus, Store, StoreError

__all__ = [
    "OutcomeWriter", "Recorded", "backoff", "below", "dead", "describe_error",
    "describe_traceback", "done", "failed",
]

log = logging.getLogger("arrears_router.dispatch")

_TEXT_LIMIT = 2000
"""Characters kept of a note or an error."""
_TRACEBACK_LIMIT = 8000
"""Characters kept of a traceback: a few dozen frames, those nearest the failure."""


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


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


def describe_traceback(exc: BaseException) -> str:
    """Where a failed attempt's exception came from, as the delivery keeps it and the log
    shows it: laid out as Python prints it, chained exceptions too, but each message told
    as :func:`describe_error` tells it (URLs cut) and no notes, so no more of what the
    exceptions say than errors show. (A plugin hides an inner exception's message with
    ``raise ... from None``.) Clipped from its start: the innermost frames say where it failed.
    """
    # Python prints the innermost exception first, each followed by how it led to the next.
    text = "".join(_block(link) + joint for joint, link in reversed(list(_chain(exc))))
    return _clip_start(text.rstrip("\n"), _TRACEBACK_LIMIT)


def _chain(exc: BaseException) -> Iterator[tuple[str, BaseException]]:
    """``exc``, then what it was raised from or while handling, and so on: each with the
    line Python prints between it and the one before (none for ``exc``)."""
    joint, link, seen = "", exc, set()
    while id(link) not in seen:
        seen.add(id(link))
        yield joint, link
        if link.__cause__ is not None:
            joint, link = _CAUSE, link.__cause__
        elif link.__context__ is not None and not link.__suppress_context__:
            joint, link = _CONTEXT, link.__context__
        else:
            return


def _block(exc: BaseException) -> str:
    frames = "".join(traceback.format_tb(exc.__traceback__))
    head = f"Traceback (most recent call last):\n{frames}" if frames else ""
    return f"{head}{describe(exc)}\n"


def _clip_start(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    kept = text[-limit:]
    kept = kept[kept.find("\n") + 1:]  # from a whole line
    return f"[{len(text) - len(kept)} characters of its start left out]\n{kept}"


def below(traceback_text: str) -> str:
    """A traceback as a log line ends with it, on lines of its own; nothing for none."""
    return f"\n{traceback_text}" if traceback_text else ""


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


def dead(claimed: ClaimedDelivery, error: str, traceback_text: str = "") -> DeliveryResult:
    return DeliveryResult(id=claimed.id, token=claimed.token, status=DeliveryStatus.DEAD,
                          error=error, traceback=traceback_text)


def failed(claimed: ClaimedDelivery, plugin: str, policy: PluginPolicy, error: str,
           traceback_text: str, retry_after: float | None) -> DeliveryResult:
    """Retry later, or give up once the plugin's attempts are spent."""
    if claimed.attempt >= policy.max_attempts:
        return dead(claimed, f"gave up after {claimed.attempt} attempts: {error}", traceback_text)
    delay = backoff(policy, claimed.attempt) if retry_after is None else max(0.0, retry_after)
    log.info("delivery %d to %s failed (attempt %d), retry in %.1f s: %s%s",
             claimed.id, plugin, claimed.attempt, delay, error, below(traceback_text))
    return DeliveryResult(id=claimed.id, token=claimed.token, status=DeliveryStatus.PENDING,
                          retry_in=delay, error=error, traceback=traceback_text)
