"""The admin API, JSON under ``/admin/api/v1``: what ops scripts call."""

from __future__ import annotations

from litestar import get
from litestar.types import ControllerRouterHandler

from arrears_router.admin.context import Admin
from arrears_router.store import PluginState

__all__ = ["API_HANDLERS"]


@get("/plugins", summary="Every plugin: its mode and deliveries by status")
async def list_plugins(admin: Admin) -> list[PluginState]:
    return await admin.store.plugin_states()


API_HANDLERS: list[ControllerRouterHandler] = [list_plugins]
