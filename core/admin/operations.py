"""What an operator does through the admin listener, whether by the API or the console.

Plain async functions over :class:`~arrears_router.admin.context.Admin` (the store and the
config as it is now): every change takes its ``actor``, the name of the token that asked,
which the store's audit log records with it. A refusal is an :class:`OperationError` whose
message a person can act on; each front end turns its kind into its own answer (404, 409...).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from arrears_router.admin.context import Admin
from arrears_router.delivery import EffectRecord, idempotency_key
from arrears_router.http import mask_openid
from arrears_router.payment import ArrearsPayment
from arrears_router.store import (
    AttemptRecord,
    DeliveryRecord,
    DeliveryStatus,
    EventRecord,
    Mode,
    NoSuchPlan,
    NoSuchQuarantine,
    PlanAlreadyRun,
    PlanTooLarge,
    QuarantineRecord,
    ReplayPlan,
    Store,
)
from arrears_router.wire.intake import Intake
from arrears_router.wire.merchants import MerchantBook

__all__ = [
    "Conflict",
    "DeliveryDetail",
    "Invalid",
    "ModeChanged",
    "NotFound",
    "OperationError",
    "PaymentDetail",
    "PluginOverview",
    "Reingested",
    "configured_after",
    "delivery_detail",
    "payment_details",
    "plan_replay",
    "plugin_overview",
    "reingest",
    "replay_delivery",
    "replay_plan",
    "run_replay_plan",
    "set_mode",
    "shown",
]


class OperationError(Exception):
    """An operation refused; the message says why, for a person."""


class NotFound(OperationError, LookupError):
    """What the operation is about does not exist (or was pruned)."""


class Conflict(OperationError):
    """The operation cannot happen in the state things are in (a plan that already ran)."""


class Invalid(OperationError, ValueError):
    """The operation was asked for with values that cannot work (a replay with no filter)."""


# -- plugins


class PluginOverview(msgspec.Struct, frozen=True, kw_only=True):
    """One plugin as ops see it: its mode, its order, and how far behind it is."""

    name: str
    mode: Mode
    configured: bool
    """False for a plugin the store knows from an earlier config only."""
    after: list[str]
    """Plugins whose delivery of a payment is done before this one's runs (the config's)."""
    pending: int
    dead: int
    done: int
    oldest_pending_at: datetime | None
    """When its oldest pending delivery was made; None when none is pending."""
    oldest_pending_age_s: float | None
    """How long ago that was, in seconds."""


async def plugin_overview(admin: Admin) -> list[PluginOverview]:
    """Every plugin the store knows, with the ``after`` order the current config gives it."""
    states = await admin.store.plugin_states()
    tables = admin.live.config.plugins
    now = datetime.now(UTC)
    return [PluginOverview(
        name=s.name, mode=s.mode, configured=s.configured,
        after=configured_after(tables.get(s.name, {})),
        pending=s.pending, dead=s.dead, done=s.done, oldest_pending_at=s.oldest_pending_at,
        oldest_pending_age_s=(None if s.oldest_pending_at is None
                              else max(0.0, (now - s.oldest_pending_at).total_seconds())),
    ) for s in states]


def configured_after(table: Mapping[str, Any]) -> list[str]:
    """The ``after`` of a ``[plugins.NAME]`` table, as written; none if it is not a list of
    names (the router refuses that edit, and keeps the last good config)."""
    after = table.get("after", ())
    if not isinstance(after, list | tuple):
        return []
    return [name for name in after if isinstance(name, str)]


class ModeChanged(msgspec.Struct, frozen=True, kw_only=True):
    plugin: str
    previous: Mode
    mode: Mode


async def set_mode(admin: Admin, plugin: str, mode: Mode, actor: str) -> ModeChanged:
    """Set a configured plugin's mode, live for every process, audited as ``actor``'s.
    NotFound for a plugin the config does not name."""
    states = {s.name: s for s in await admin.store.plugin_states()}
    if plugin not in states or not states[plugin].configured:
        raise NotFound(f"no configured plugin named {plugin!r}; configured:"
                       f" {', '.join(sorted(n for n, s in states.items() if s.configured))}")
    previous = await admin.store.set_mode(plugin, mode, actor)
    return ModeChanged(plugin=plugin, previous=previous, mode=mode)


# -- payments and deliveries


class PaymentDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A stored payment, whole, with every delivery made of it (oldest first)."""

    id: int
    received_at: datetime
    payment: ArrearsPayment
    deliveries: list[DeliveryRecord]


def shown(record: EventRecord) -> EventRecord:
    """A stored payment as ops see it, its openid masked: they find a rider by the ids they
    know (transaction_id, out_user_id, repay_no), and a whole openid leaves no page."""
    payment = msgspec.structs.replace(record.payment, openid=mask_openid(record.payment.openid))
    return msgspec.structs.replace(record, payment=payment)


async def payment_details(store: Store, transaction_id: str) -> list[PaymentDetail]:
    """The payments stored with this transaction_id (one per merchant at most), each with its
    deliveries. NotFound when there is none."""
    events = await store.events_by_transaction(transaction_id)
    if not events:
        raise NotFound(f"no stored payment with transaction_id {transaction_id!r}")
    deliveries = await store.deliveries_by_transaction(transaction_id)
    return [PaymentDetail(id=e.id, received_at=e.received_at, payment=shown(e).payment,
                          deliveries=[d for d in deliveries if d.event_id == e.id])
            for e in events]


class DeliveryDetail(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery, its latest attempts (newest first) and its effect record, if its plugin
    keeps one (``Delivery.once``)."""

    delivery: DeliveryRecord
    attempts: list[AttemptRecord]
    effect: EffectRecord | None


async def delivery_detail(store: Store, delivery_id: int) -> DeliveryDetail:
    """NotFound for a delivery unknown or pruned."""
    record = await store.delivery(delivery_id)
    if record is None:
        raise NotFound(f"no delivery {delivery_id}")
    key = idempotency_key(record.mch_id, record.transaction_id, record.plugin)
    return DeliveryDetail(delivery=record, attempts=await store.attempts(delivery_id),
                          effect=await store.effect(key))


async def replay_delivery(admin: Admin, delivery_id: int, actor: str) -> DeliveryRecord:
    """Make one delivery (dead or done) due again with a fresh count of attempts, audited;
    the delivery as it is now. NotFound for an unknown one; Conflict for a pending one (it
    runs already)."""
    record = await admin.store.delivery(delivery_id)
    if record is None:
        raise NotFound(f"no delivery {delivery_id}")
    if record.status is DeliveryStatus.PENDING:
        raise Conflict(f"delivery {delivery_id} is pending: it runs without a replay")
    await admin.store.replay(delivery_id=delivery_id, actor=actor)
    return await admin.store.delivery(delivery_id) or record


# -- bulk replays, in two steps


async def plan_replay(admin: Admin, *, plugin: str | None, since: datetime | None,
                      until: datetime | None, actor: str) -> ReplayPlan:
    """Plan a replay of the dead deliveries of ``plugin`` and/or made in [since, until), as
    they are now; audited. :func:`run_replay_plan` replays exactly those. Invalid without a
    filter (an empty range is an empty plan), or when the filter matches more than a plan
    may hold (:data:`~arrears_router.store.REPLAY_PLAN_MAX`)."""
    if plugin is None and since is None and until is None:
        raise Invalid("say which dead deliveries: a plugin, and/or since/until")
    try:
        return await admin.store.plan_replay(plugin=plugin, since=since, until=until,
                                             actor=actor)
    except PlanTooLarge as exc:
        raise Invalid(str(exc)) from None


async def replay_plan(store: Store, plan_id: int) -> ReplayPlan:
    """NotFound when no plan has this id."""
    plan = await store.replay_plan(plan_id)
    if plan is None:
        raise NotFound(f"no replay plan {plan_id}")
    return plan


async def run_replay_plan(admin: Admin, plan_id: int, actor: str) -> ReplayPlan:
    """Replay the plan's deliveries still dead, once; the plan with what it replayed.
    NotFound for an unknown plan; Conflict for one that ran already."""
    try:
        return await admin.store.run_replay_plan(plan_id, actor)
    except NoSuchPlan as exc:
        raise NotFound(str(exc)) from None
    except PlanAlreadyRun as exc:
        raise Conflict(str(exc)) from None


# -- quarantine


class Reingested(msgspec.Struct, frozen=True, kw_only=True):
    """What the intake answered a quarantined request's body, as it would answer WeChat."""

    errcode: int
    errmsg: str
    quarantine: QuarantineRecord
    """The request, with this outcome recorded on it."""


async def reingest(admin: Admin, quarantine_id: int, actor: str) -> Reingested:
    """Run a quarantined request's body through the intake again, with the merchants and
    keys of the config as it is now (a key fixed since): stored once (a second re-ingest
    answers "already stored", and makes no second delivery), or refused again with the
    reason it has now. The outcome is recorded on the request, audited as ``actor``'s.
    NotFound for a request not kept (never, or pruned)."""
    record = await admin.store.quarantine_record(quarantine_id)
    if record is None:
        raise NotFound(f"no quarantined request {quarantine_id}")
    merchants = MerchantBook.from_config(admin.live.config.merchants)
    reply = await Intake(merchants, admin.store).reingest(record.body)
    try:
        updated = await admin.store.record_reingest(
            quarantine_id, errcode=int(reply.errcode), reason=reply.errmsg, actor=actor)
    except NoSuchQuarantine as exc:  # pruned meanwhile
        raise NotFound(str(exc)) from None
    return Reingested(errcode=int(reply.errcode), errmsg=reply.errmsg, quarantine=updated)
