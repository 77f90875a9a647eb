"""The admin listener's app: the API under ``/admin/api/v1``, the console under ``/admin/``,
and ``/metrics``; nothing of the callback WeChat calls."""

from __future__ import annotations

import logging

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import Scope

from arrears_router.admin.api import API_HANDLERS
from arrears_router.admin.console import console_router, console_static, template_config
from arrears_router.admin.context import Admin
from arrears_router.admin.metrics import metrics_route
from arrears_router.admin.operations import OperationError
from arrears_router.admin.tokens import BearerAuth
from arrears_router.metrics import metrics_dir
from arrears_router.store import StoreError

__all__ = ["API_PATH", "create_admin_app"]

API_PATH = "/admin/api/v1"

log = logging.getLogger("arrears_router.admin")


def _log_failure(exc: Exception, scope: Scope) -> None:
    """Say what failed, with where: Litestar logs nothing here (``logging_config=None``: the
    CLI set logging up), and a 500 would otherwise leave no trace."""
    if isinstance(exc, HTTPException | OperationError):
        return  # an answer: refused, not found, bad input
    where = f"{scope.get('method', '')} {scope.get('path', '')}"
    if isinstance(exc, StoreError):
        log.warning("admin: %s: the store failed: %s", where, exc)
    else:
        log.error("admin: %s failed", where, exc_info=exc)


def create_admin_app(admin: Admin) -> Litestar:
    config = admin.live.config
    api = Router(
        API_PATH, route_handlers=API_HANDLERS,
        middleware=[BearerAuth.using(lambda: admin.live.tokens)],
        security=[{"bearer": []}],
    )
    return Litestar(
        route_handlers=[api, console_router(admin), console_static(),
                        metrics_route(admin.store, metrics_dir(config.store.url,
                                                               config.admin.metrics_dir))],
        template_config=template_config(),
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
        after_exception=[_log_failure],
    )
