"""Deliveries: one with its attempts, the dead letters, and replays of one or of many."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from arrears_router.admin.api_common import Cursor, FormText, Id
from arrears_router.admin.console.guard import CONSOLE_PATH
from arrears_router.admin.console.query import PAGE_SIZE, listed
from arrears_router.admin.console.rendering import page
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import (
    delivery_detail,
    plan_replay,
    plugin_overview,
    replay_delivery,
    replay_plan,
    run_replay_plan,
)
from arrears_router.admin.tokens import Principal, may_operate
from arrears_router.store import DeliveryStatus

__all__ = ["DELIVERY_HANDLERS"]


class PlanForm(msgspec.Struct, frozen=True, kw_only=True):
    plugin: Annotated[str, msgspec.Meta(min_length=1, max_length=128,
                                        pattern=r"^[^\x00-\x1f\x7f]*$")]


@get("/deliveries/{delivery_id:int}")
async def delivery(request: Request[Any, Any, Any], admin: Admin, delivery_id: Id
                   ) -> Template:
    return page(request, "delivery.html", nav="dead",
                detail=await delivery_detail(admin.store, delivery_id))


@post("/deliveries/{delivery_id:int}/replay", guards=[may_operate], status_code=303)
async def replay(request: Request[Principal, Any, Any], admin: Admin, delivery_id: Id
                 ) -> Redirect:
    await replay_delivery(admin, delivery_id, request.user.name)
    return Redirect(f"{CONSOLE_PATH}/deliveries/{delivery_id}", status_code=303)


@get("/dead")
async def dead_letters(request: Request[Any, Any, Any], admin: Admin, plugin: FormText = "",
                       before: Cursor = None) -> Template:
    """The dead deliveries, newest first, of one plugin or all."""
    found, older = listed(await admin.store.deliveries(
        status=DeliveryStatus.DEAD, plugin=plugin or None, before=before,
        limit=PAGE_SIZE + 1), lambda d: d.id)
    return page(request, "dead.html", nav="dead", deliveries=found, plugin=plugin,
                plugins=await plugin_overview(admin), older=older)


@post("/dead/plans", guards=[may_operate], status_code=303)
async def plan(request: Request[Principal, Any, Any], admin: Admin,
               data: Annotated[PlanForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
               ) -> Redirect:
    """The first step of replaying a plugin's dead deliveries: which they are, to confirm."""
    planned = await plan_replay(admin, plugin=data.plugin, since=None, until=None,
                                actor=request.user.name)
    return Redirect(f"{CONSOLE_PATH}/dead/plans/{planned.id}", status_code=303)


@get("/dead/plans/{plan_id:int}")
async def plan_page(request: Request[Any, Any, Any], admin: Admin, plan_id: Id) -> Template:
    return page(request, "plan.html", nav="dead", plan=await replay_plan(admin.store, plan_id))


@post("/dead/plans/{plan_id:int}/run", guards=[may_operate], status_code=303)
async def run_plan(request: Request[Principal, Any, Any], admin: Admin, plan_id: Id
                   ) -> Redirect:
    await run_replay_plan(admin, plan_id, request.user.name)
    return Redirect(f"{CONSOLE_PATH}/dead/plans/{plan_id}", status_code=303)


DELIVERY_HANDLERS = [delivery, replay, dead_letters, plan, plan_page, run_plan]
