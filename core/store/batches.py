"""What every backend's group-committed writer shares: the kinds of write in a batch, what a
stored payment comes back as, and how the rows they read become records."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, NamedTuple, TypeVar

from arrears_router.delivery import EffectRecord
from arrears_router.errcodes import ErrCode
from arrears_router.store import (
    REPLAY_PLAN_MAX,
    Accepted,
    ClaimedDelivery,
    DeliveryRecord,
    DeliveryStatus,
    Mode,
    NewEvent,
    NoSuchPlan,
    NoSuchQuarantine,
    PlanAlreadyRun,
    PlanTooLarge,
    PluginRoute,
    QuarantineBound,
    QuarantineBounds,
    Quarantined,
    QuarantineEntry,
    QuarantineRecord,
    ReplayPlan,
    StoreError,
    replay_filter,
)

__all__ = [
    "RATE_WINDOW",
    "Accept",
    "Bookkeeping",
    "CommittedWrites",
    "Stored",
    "Writes",
    "conflict_entry",
    "delivery_record",
    "log_overflow",
]

log = logging.getLogger("arrears_router.store")

Connection = TypeVar("Connection")
T = TypeVar("T")

RATE_WINDOW = timedelta(minutes=1)
"""The quarantine's rate bound counts a merchant's new rows in this window."""


class Accept:
    """A payment to store: written with the rest of its batch's payments, in one statement;
    its deliveries to the plugins in ``leases`` are claimed as they are made."""

    __slots__ = ("event", "leases")

    def __init__(self, event: NewEvent, leases: Mapping[str, float]) -> None:
        self.event = event
        self.leases = leases


class Bookkeeping(Generic[Connection, T]):
    """A delivery's claim or outcome. Its commit need not wait for the disk: lost in a power
    cut, a delivery runs once more, which plugins already take (delivery is at least once).
    Payments, quarantine and modes are always synced before anyone is told they are kept.
    """

    __slots__ = ("write",)

    def __init__(self, write: Callable[[Connection], T]) -> None:
        self.write = write

    def __call__(self, db: Connection) -> T:
        return self.write(db)


class Stored(NamedTuple):
    outcome: Accepted
    claimed: list[tuple[int, str]]
    """(delivery id, plugin) of the deliveries claimed at birth."""
    token: str

    def deliveries(self, event: NewEvent) -> list[ClaimedDelivery]:
        return [ClaimedDelivery(id=id_, plugin=plugin, attempt=1, token=self.token,
                                payment=event.payment)
                for id_, plugin in self.claimed]


@dataclass(frozen=True)
class Writes(Generic[Connection]):
    """A backend's writes that its store hands to the committer as they are: each a function
    of the batch's transaction, its arguments first."""

    quarantine: Callable[[QuarantineEntry, QuarantineBounds, Connection], Quarantined]
    sync_plugins: Callable[[Sequence[PluginRoute], Connection], None]
    set_mode: Callable[[str, Mode, str, Connection], Mode | None]
    """The mode the plugin had; None if no configured plugin has that name."""
    begin_effect: Callable[[str, Connection], EffectRecord | None]
    end_effect: Callable[[str, bool, Connection], None]
    plan_replay: Callable[[str | None, datetime | None, datetime | None, str, Connection],
                          ReplayPlan | None]
    """The new plan; None, keeping nothing, if more than a plan may hold match."""
    run_replay_plan: Callable[[int, str, Connection], tuple[ReplayPlan | None, bool]]
    """The plan (None if there is none), and whether this call ran it."""
    record_reingest: Callable[[int, int, str, str, Connection], QuarantineRecord | None]
    """The updated record; None if there is none."""


class CommittedWrites(Generic[Connection]):
    """The writes both backends' stores make the same way, through their group committer:
    a store sets :attr:`writes` and :attr:`bounds`, and implements :meth:`_submit`."""

    writes: Writes[Connection]
    bounds: QuarantineBounds

    async def _submit(self, write: Any) -> Any:
        """Queue ``write`` (a function of the connection, or an :class:`Accept`) for the
        next batch and return its result once committed; StoreError if it was not."""
        raise NotImplementedError

    async def _write(self, write: Callable[[Connection], T] | Bookkeeping[Connection, T]) -> T:
        result: T = await self._submit(write)
        return result

    async def accept(self, event: NewEvent) -> Accepted:
        accepted, _ = await self.accept_and_claim(event, {})
        return accepted

    async def accept_and_claim(
        self, event: NewEvent, leases: Mapping[str, float]
    ) -> tuple[Accepted, list[ClaimedDelivery]]:
        stored: Stored = await self._submit(Accept(event, leases))
        return stored.outcome, stored.deliveries(event)

    async def quarantine(self, entry: QuarantineEntry) -> Quarantined:
        return await self._write(partial(self.writes.quarantine, entry, self.bounds))

    async def sync_plugins(self, routes: Sequence[PluginRoute]) -> None:
        await self._write(partial(self.writes.sync_plugins, routes))

    async def set_mode(self, plugin: str, mode: Mode, actor: str) -> Mode:
        previous = await self._write(partial(self.writes.set_mode, plugin, mode, actor))
        if previous is None:
            raise StoreError(f"no configured plugin named {plugin!r}")
        return previous

    # A refusal is returned from the write and raised here, after the commit: raised inside,
    # it would roll back the other writes of its batch.

    async def plan_replay(
        self, *, plugin: str | None = None, since: datetime | None = None,
        until: datetime | None = None, actor: str,
    ) -> ReplayPlan:
        if plugin is None and since is None and until is None:
            raise StoreError("a replay plan needs a filter: a plugin, since and/or until")
        plan = await self._write(partial(self.writes.plan_replay, plugin, since, until, actor))
        if plan is None:
            raise PlanTooLarge(f"more than {REPLAY_PLAN_MAX} dead deliveries match"
                               f" {replay_filter(plugin, since, until)}: narrow the filter")
        return plan

    async def run_replay_plan(self, plan_id: int, actor: str) -> ReplayPlan:
        plan, ran = await self._write(partial(self.writes.run_replay_plan, plan_id, actor))
        if plan is None:
            raise NoSuchPlan(plan_id)
        if not ran:
            raise PlanAlreadyRun(plan)
        return plan

    async def record_reingest(
        self, quarantine_id: int, *, errcode: int, reason: str, actor: str,
    ) -> QuarantineRecord:
        record = await self._write(
            partial(self.writes.record_reingest, quarantine_id, errcode, reason, actor))
        if record is None:
            raise NoSuchQuarantine(quarantine_id)
        return record

    async def begin_effect(self, key: str) -> EffectRecord | None:
        # Synced, as a payment is: the record must outlast a crash in the effect it precedes.
        return await self._write(partial(self.writes.begin_effect, key))

    async def end_effect(self, key: str, *, done: bool) -> None:
        # Bookkeeping: lost in a power cut, the effect is left begun, so of unknown outcome,
        # which is what the next attempt would then rightly take it for.
        await self._write(Bookkeeping(partial(self.writes.end_effect, key, done)))


def conflict_entry(event: NewEvent) -> QuarantineEntry:
    """What a payment whose transaction_id is stored with other content is quarantined as."""
    payment = event.payment
    return QuarantineEntry(
        errcode=ErrCode.CONFLICTING_DUPLICATE,
        reason="transaction_id already stored with different content",
        appid=payment.appid, mch_id=payment.mch_id, transaction_id=payment.transaction_id,
        body=event.envelope, received_at=event.received_at,
        # The conflicting payment itself, however its envelope was spaced or encrypted.
        digest=event.digest,
    )


def delivery_record(
    *, id: int, event_id: int, mch_id: str, transaction_id: str, plugin: str, status: str,
    attempt: int, next_at: datetime, last_error: str, note: str, replays: int,
    created_at: datetime, updated_at: datetime, last_traceback: str,
) -> DeliveryRecord:
    # Once done, the last failure is history: kept under names that say so, not as current.
    done = status == DeliveryStatus.DONE
    return DeliveryRecord(
        id=id, event_id=event_id, mch_id=mch_id, transaction_id=transaction_id, plugin=plugin,
        status=DeliveryStatus(status), attempt=attempt, next_at=next_at,
        last_error="" if done else last_error, note=note, replays=replays,
        created_at=created_at, updated_at=updated_at,
        last_traceback="" if done else last_traceback,
        error_before_done=last_error if done else "",
        traceback_before_done=last_traceback if done else "",
    )


def log_overflow(entry: QuarantineEntry, bound: QuarantineBound, count: int) -> None:
    """Say that a bound was reached, at the 1st, 10th, 100th... request only counted: never
    a line per request of a flood."""
    leading = count
    while leading >= 10 and leading % 10 == 0:
        leading //= 10
    if leading == 1:
        log.warning("quarantine %s bound reached: %d request(s) of mch_id=%s errcode=%d"
                    " only counted, not kept (see `arrears-router quarantine stats`)",
                    bound, count, entry.mch_id, entry.errcode)
