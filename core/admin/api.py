"""The admin API, JSON under ``/admin/api/v1``: what ops scripts call.

Its routes are gathered here from a module a concern (payments and deliveries, quarantine
and audit, config and ledger), under one router that turns every refusal into a JSON error
(:mod:`~arrears_router.admin.api_common`). What changes something is guarded: a ``read``
token gets 403; the change is audited with the token's name.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, put
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from arrears_router.admin import operations
from arrears_router.admin.api_common import (
    API_EXCEPTION_HANDLERS,
    CHANGES,
    NOT_FOUND,
    READS,
    STRICT,
    actor,
)
from arrears_router.admin.api_config import CONFIG_HANDLERS
from arrears_router.admin.api_payments import PAYMENT_HANDLERS
from arrears_router.admin.api_quarantine import QUARANTINE_HANDLERS
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import ModeChanged, PluginOverview
from arrears_router.admin.tokens import Principal, may_operate
from arrears_router.store import Mode

__all__ = ["API_HANDLERS", "ModeRequest"]


@get("/plugins", summary="Every plugin: its mode, order, deliveries by status, and backlog",
     raises=READS)
async def list_plugins(admin: Admin) -> list[PluginOverview]:
    return await operations.plugin_overview(admin)


class ModeRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    mode: Mode


@put("/plugins/{name:str}/mode", guards=[may_operate],
     summary="Set a plugin's mode, live in every process", raises=[*CHANGES, *NOT_FOUND])
async def set_mode(
    admin: Admin, request: Request[Principal, Any, Any],
    name: Annotated[str, Parameter(min_length=1, max_length=128,
                                   pattern=r"^[^\x00-\x1f\x7f/]*$")],
    data: Annotated[ModeRequest, STRICT],
) -> ModeChanged:
    return await operations.set_mode(admin, name, data.mode, actor(request))


API_HANDLERS: list[ControllerRouterHandler] = [Router(
    "/", route_handlers=[list_plugins, set_mode, *PAYMENT_HANDLERS, *QUARANTINE_HANDLERS,
                         *CONFIG_HANDLERS],
    exception_handlers=API_EXCEPTION_HANDLERS,
)]
