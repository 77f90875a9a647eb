"""What a plugin gets with each payment: its delivery, and through it a once-only effect."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol

import msgspec

__all__ = ["Delivery", "Effect", "EffectJournal", "EffectRecord", "idempotency_key"]


def idempotency_key(mch_id: str, transaction_id: str, plugin: str) -> str:
    """The same for every attempt and replay of one payment's delivery to one plugin."""
    return f"{mch_id}:{transaction_id}:{plugin}"


class EffectRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the store knows of one delivery's effect (:meth:`Delivery.once`)."""

    idempotency_key: str
    begun_at: datetime
    done_at: datetime | None = None
    """None: begun and never recorded done, so in flight or of unknown outcome (a crash, a
    timeout, an answer that did not say)."""


class EffectJournal(Protocol):
    """Where effects are recorded: the router's store."""

    async def begin_effect(self, key: str) -> EffectRecord | None:
        """Record, committed before returning, that the effect of ``key`` begins, unless it
        is recorded already: that earlier record then, unchanged; None when this call made it.
        """

    async def end_effect(self, key: str, *, done: bool) -> None:
        """The begun effect of ``key`` is done; or (``done=False``) it did not happen: its
        record goes, and a later attempt may act again. A done one stays done."""


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
    """A logger named for the plugin. Never log a phone number, a key or a full openid: the
    router masks those it recognises in every line, but a transformed one slips past."""
    flags: list[str] = field(default_factory=list)
    effects: EffectJournal | None = field(default=None, repr=False, compare=False)
    """Where :meth:`once` records effects; the router gives its store."""

    def flag(self, reason: str) -> None:
        """Ask a person to look at this payment (an overpayment to refund, say). Once the
        attempt succeeds, every plugin's ``payment_flagged`` hook hears of it.
        """
        self.flags.append(reason)

    def once(self, *, at_most_once: bool = False) -> Effect:
        """The delivery's effect, made once whatever the retries, replays and crashes: for
        an effect the far side cannot dedupe on the idempotency key (a text message). An
        async context manager, for async hooks::

            async with delivery.once(at_most_once=True) as effect:
                if not effect.act:
                    return effect.note
                answer = await send(...)
                if answer.refused:  # nothing happened: a retry may try again
                    effect.nothing_done()
                    raise RetryableError(...)

        Before the block, the store records that the effect begins (by ``idempotency_key``),
        committed; when the block ends without an exception, that it is done. An exception
        leaves its outcome unknown, unless ``effect.nothing_done()`` said nothing happened
        (the far side was never reached, or refused).

        ``effect.act`` is False, and ``effect.note`` says why, when the effect was done
        already (a replay, a retry after a lost success), or when ``at_most_once`` is set and
        an earlier attempt's outcome is unknown: then the payment is also flagged (:meth:`flag`)
        for a person to check whether it happened. Without ``at_most_once`` an unknown outcome
        is acted on again (at least once), as a far side that dedupes allows.
        """
        if self.effects is None:
            raise RuntimeError(f"delivery {self.id} has no store to record its effect in:"
                               " run it through a router (the test kit's)")
        return Effect(self, self.effects, at_most_once=at_most_once)


class Effect:
    """One attempt's turn at its delivery's effect: what :meth:`Delivery.once` returns."""

    def __init__(self, delivery: Delivery, journal: EffectJournal, *, at_most_once: bool) -> None:
        self._delivery = delivery
        self._journal = journal
        self._at_most_once = at_most_once
        self._began = False
        """This attempt made the record: it may take it back (:meth:`nothing_done`)."""
        self._nothing_done = False
        self.act = False
        """Whether to make the effect now; known inside the ``async with`` block."""
        self.note = ""
        """Why not, when not: a note for the delivery."""

    def nothing_done(self) -> None:
        """Nothing happened in this attempt (the far side was never reached, or it refused):
        when the block ends with an exception, a later attempt may act again."""
        self._nothing_done = True

    async def __aenter__(self) -> Effect:
        delivery = self._delivery
        earlier = await self._journal.begin_effect(delivery.idempotency_key)
        if earlier is None:
            self.act = self._began = True
        elif earlier.done_at is not None:
            self.note = f"done already at {_moment(earlier.done_at)}: not done again"
            delivery.log.info("delivery %d: %s", delivery.id, self.note)
        elif self._at_most_once:
            self.note = "not done again: an earlier attempt's outcome is unknown (at most once)"
            delivery.flag(f"an attempt began at {_moment(earlier.begun_at)} and never recorded"
                          " its end (a crash or a timeout): check whether it happened; it is"
                          " not done again")
            delivery.log.warning("delivery %d: %s", delivery.id, self.note)
        else:
            self.act = True
            delivery.log.info("delivery %d: an earlier attempt's outcome is unknown; acting"
                              " again (at least once)", delivery.id)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if not self.act:
            return
        if exc is None:
            await self._end(done=True)
        # A cancel (the router's timeout) is never a known "nothing": it may strike mid-call.
        elif self._began and self._nothing_done and isinstance(exc, Exception):
            await self._end(done=False)

    async def _end(self, *, done: bool) -> None:
        """Record the end; a failure to must not hide how the effect went, which is told
        anyway: the record left begun makes the next attempt take the outcome as unknown."""
        delivery = self._delivery
        try:
            await self._journal.end_effect(delivery.idempotency_key, done=done)
        except Exception as exc:
            delivery.log.warning("delivery %d: cannot record the effect's end (%s): %r",
                                 delivery.id, "done" if done else "nothing done", exc)


def _moment(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
