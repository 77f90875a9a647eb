"""Plugins and their modes: each one's backlog, who changed its mode last and when, and
(for ``operate`` tokens) a change of mode, confirmed on a page of its own first."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from arrears_router.admin.console.guard import CONSOLE_PATH
from arrears_router.admin.console.rendering import page
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import NotFound, plugin_overview, set_mode
from arrears_router.admin.tokens import Principal, may_operate
from arrears_router.store import Mode, ModeChange

__all__ = ["MODE_MEANING", "PLUGIN_HANDLERS"]

MODE_MEANING = {
    Mode.ENABLED: "its deliveries are made and run",
    Mode.PAUSED: "its deliveries are made and held; enabling it again runs them, in order",
    Mode.DISABLED: "no deliveries are made for it; those already made are held",
}
CHANGES_READ = 500
"""Mode changes read for the latest of each plugin: many more than plugins are changed
between two looks."""


class ModeForm(msgspec.Struct, frozen=True, kw_only=True):
    mode: Mode


async def _last_changes(admin: Admin) -> dict[str, ModeChange]:
    latest: dict[str, ModeChange] = {}
    for change in await admin.store.mode_changes(limit=CHANGES_READ):  # newest first
        latest.setdefault(change.plugin, change)
    return latest


@get("/plugins")
async def plugins_page(request: Request[Principal, Any, Any], admin: Admin) -> Template:
    return page(request, "plugins.html", nav="plugins", plugins=await plugin_overview(admin),
                changes=await _last_changes(admin), meaning=MODE_MEANING)


@get("/plugins/{name:str}/mode", guards=[may_operate])
async def confirm_mode(request: Request[Principal, Any, Any], admin: Admin, name: str,
                       to: Mode) -> Template:
    plugin = next((p for p in await plugin_overview(admin) if p.name == name), None)
    if plugin is None or not plugin.configured:
        raise NotFound(f"no configured plugin named {name!r}")
    return page(request, "confirm_mode.html", nav="plugins", plugin=plugin, to=to,
                change=(await _last_changes(admin)).get(name), meaning=MODE_MEANING)


@post("/plugins/{name:str}/mode", guards=[may_operate], status_code=303)
async def change_mode(request: Request[Principal, Any, Any], admin: Admin, name: str,
                      data: Annotated[ModeForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
                      ) -> Redirect:
    await set_mode(admin, name, data.mode, request.user.name)
    return Redirect(f"{CONSOLE_PATH}/plugins", status_code=303)


PLUGIN_HANDLERS = [plugins_page, confirm_mode, change_mode]
