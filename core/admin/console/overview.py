"""The overview: the intake's rates, each plugin's backlog, dead letters and quarantine, on
one page whose numbers refresh themselves (``console.js`` fetches the live part again)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Request, get
from litestar.response import Template

from arrears_router.admin.console.rates import IntakeRates, Rates
from arrears_router.admin.console.rendering import page
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import PluginOverview, plugin_overview

__all__ = ["OVERVIEW_HANDLERS", "Overview", "overview_of"]


class Overview(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    rates: Rates | None
    """None until a second look measures them."""
    plugins: list[PluginOverview]
    dead: int
    quarantined: int
    """Requests the quarantine keeps."""

    @property
    def pending(self) -> int:
        return sum(plugin.pending for plugin in self.plugins)


async def overview_of(admin: Admin, rates: IntakeRates) -> Overview:
    plugins = await plugin_overview(admin)
    quarantine = await admin.store.quarantine_stats()
    return Overview(at=datetime.now(UTC), rates=await rates.now(), plugins=plugins,
                    dead=sum(plugin.dead for plugin in plugins), quarantined=quarantine.rows)


@get("/")
async def overview(request: Request[Any, Any, Any], admin: Admin, rates: IntakeRates
                   ) -> Template:
    return page(request, "overview.html", nav="overview",
                overview=await overview_of(admin, rates))


@get("/overview/live")
async def overview_live(request: Request[Any, Any, Any], admin: Admin, rates: IntakeRates
                        ) -> Template:
    """The page's live part alone, for ``console.js`` to put in place."""
    return page(request, "overview_live.html", overview=await overview_of(admin, rates))


OVERVIEW_HANDLERS = [overview, overview_live]
