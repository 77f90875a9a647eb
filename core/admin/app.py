"""The admin listener's app: the API under ``/admin/api/v1``, the console under ``/admin/``,
and ``/metrics``; nothing of the callback WeChat calls."""

from __future__ import annotations

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from arrears_router.admin.api import API_HANDLERS
from arrears_router.admin.context import Admin
from arrears_router.admin.tokens import BearerAuth

__all__ = ["API_PATH", "create_admin_app"]

API_PATH = "/admin/api/v1"


def create_admin_app(admin: Admin) -> Litestar:
    api = Router(
        API_PATH, route_handlers=API_HANDLERS,
        middleware=[BearerAuth.using(lambda: admin.live.tokens)],
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[api],
        dependencies={"admin": Provide(lambda: admin, use_cache=True, sync_to_thread=False)},
        lifespan=[admin.opened],
        openapi_config=OpenAPIConfig(
            title="arrears-router admin API", version="1",
            path=f"{API_PATH}/schema",
            # The schema as JSON alone: the UIs Litestar offers load scripts from a CDN.
            render_plugins=[JsonRenderPlugin()],
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer",
                                         description="a token of [[admin.tokens]]"),
            }),
        ),
        logging_config=None,
    )
