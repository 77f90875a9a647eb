"""The admin API's payments, their deliveries, and replays: what was paid and what each
plugin made of it, and running plugins' work again."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request, get, post
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler
from msgspec import UNSET, UnsetType

from arrears_router.admin import operations
from arrears_router.admin.api_common import (
    CHANGES,
    NOT_FOUND,
    READS,
    STRICT_NOT_EMPTY,
    ConflictException,
    Cursor,
    Id,
    Limit,
    Page,
    Text,
    Time,
    actor,
    bounded,
    page,
    zoned,
)
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import DeliveryDetail, PaymentDetail
from arrears_router.admin.tokens import Principal, may_operate
from arrears_router.store import DeliveryRecord, DeliveryStatus, EventRecord, ReplayPlan

__all__ = ["PAYMENT_HANDLERS", "PaymentsOf", "ReplayRequest"]

T = TypeVar("T")

TransactionId = Annotated[str, Parameter(
    min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f/]*$")]


@get("/payments", summary="Stored payments, newest first, by any of their keys",
     raises=READS)
async def list_payments(
    admin: Admin, transaction_id: Text = None, out_user_id: Text = None, repay_no: Text = None,
    since: Time = None, until: Time = None, limit: Limit = 50, after: Cursor = None,
) -> Page[EventRecord]:
    zoned(since=since, until=until)
    since, until = bounded(since), bounded(until)
    found = await admin.store.search_events(
        transaction_id=transaction_id, out_user_id=out_user_id, repay_no=repay_no,
        since=since, until=until, before=after, limit=limit + 1)
    return page([operations.shown(e) for e in found], limit, lambda e: e.id)


class PaymentsOf(msgspec.Struct, frozen=True, kw_only=True):
    transaction_id: str
    payments: list[PaymentDetail]
    """One per merchant that has this transaction_id: nearly always one."""


@get("/payments/{transaction_id:str}", summary="A payment, whole, with its deliveries",
     raises=[*READS, *NOT_FOUND])
async def show_payment(admin: Admin, transaction_id: TransactionId) -> PaymentsOf:
    return PaymentsOf(transaction_id=transaction_id,
                      payments=await operations.payment_details(admin.store, transaction_id))


@get("/deliveries", summary="Deliveries, newest first, by plugin, status and time made",
     raises=READS)
async def list_deliveries(
    admin: Admin, plugin: Text = None, status: DeliveryStatus | None = None,
    since: Time = None, until: Time = None, limit: Limit = 50, after: Cursor = None,
) -> Page[DeliveryRecord]:
    zoned(since=since, until=until)
    since, until = bounded(since), bounded(until)
    found = await admin.store.deliveries(plugin=plugin, status=status, since=since,
                                         until=until, before=after, limit=limit + 1)
    return page(found, limit, lambda d: d.id)


@get("/deliveries/{delivery_id:int}", summary="A delivery, its attempts and its effect",
     raises=[*READS, *NOT_FOUND])
async def show_delivery(admin: Admin, delivery_id: Id) -> DeliveryDetail:
    return await operations.delivery_detail(admin.store, delivery_id)


@post("/deliveries/{delivery_id:int}/replay", guards=[may_operate], status_code=200,
      summary="Run a dead or done delivery again", raises=[*CHANGES, *NOT_FOUND,
                                                         ConflictException])
async def replay_delivery(admin: Admin, request: Request[Principal, Any, Any],
                          delivery_id: Id) -> DeliveryRecord:
    return await operations.replay_delivery(admin, delivery_id, actor(request))


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Which dead deliveries a bulk replay takes: of a plugin, and/or made in [since, until);
    one of them at least."""

    plugin: Annotated[str, msgspec.Meta(min_length=1, max_length=128,
                                        pattern=r"^[^\x00-\x1f\x7f]*$")] | UnsetType = UNSET
    since: Annotated[datetime, msgspec.Meta(tz=True)] | UnsetType = UNSET
    until: Annotated[datetime, msgspec.Meta(tz=True)] | UnsetType = UNSET


def _given(value: T | UnsetType) -> T | None:
    return None if isinstance(value, UnsetType) else value


@post("/replays", guards=[may_operate], summary="Plan a bulk replay of dead deliveries",
      description="The plan holds the deliveries dead now; running it replays those still"
                  " dead, and no other.", raises=CHANGES)
async def plan_replay(admin: Admin, request: Request[Principal, Any, Any],
                      data: Annotated[ReplayRequest, STRICT_NOT_EMPTY]) -> ReplayPlan:
    since, until = bounded(_given(data.since)), bounded(_given(data.until))
    return await operations.plan_replay(
        admin, plugin=_given(data.plugin), since=since, until=until, actor=actor(request))


@get("/replays/{plan_id:int}", summary="A bulk replay plan", raises=[*READS, *NOT_FOUND])
async def show_replay(admin: Admin, plan_id: Id) -> ReplayPlan:
    return await operations.replay_plan(admin.store, plan_id)


@post("/replays/{plan_id:int}/run", guards=[may_operate], status_code=200,
      summary="Run a plan, once", raises=[*CHANGES, *NOT_FOUND, ConflictException])
async def run_replay(admin: Admin, request: Request[Principal, Any, Any],
                     plan_id: Id) -> ReplayPlan:
    return await operations.run_replay_plan(admin, plan_id, actor(request))


PAYMENT_HANDLERS: list[ControllerRouterHandler] = [
    list_payments, show_payment, list_deliveries, show_delivery, replay_delivery,
    plan_replay, show_replay, run_replay,
]
