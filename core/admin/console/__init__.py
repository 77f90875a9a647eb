"""The web console under ``/admin/``: pages for people, rendered on the server.

Signed in with a token (a session cookie, :mod:`.sessions`); every form carries the
session's CSRF token (:mod:`.guard`); every change goes through ``admin.operations``, as the
API's do, with the token's name as the actor. Templates and static files ship inside the
package: no script or style sheet comes from anywhere else.
"""

from __future__ import annotations

from litestar import Router
from litestar.datastructures import CacheControlHeader, ResponseHeader
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.static_files import create_static_files_router

from arrears_router.admin.console.audit import AUDIT_HANDLERS
from arrears_router.admin.console.deliveries import DELIVERY_HANDLERS
from arrears_router.admin.console.guard import (
    CONSOLE_PATH,
    ConsoleAuth,
    check_csrf,
    on_operation_error,
    on_refusal,
    on_store_failed,
)
from arrears_router.admin.console.login import LOGIN_HANDLERS
from arrears_router.admin.console.overview import OVERVIEW_HANDLERS
from arrears_router.admin.console.payments import PAYMENT_HANDLERS
from arrears_router.admin.console.plugins import PLUGIN_HANDLERS
from arrears_router.admin.console.quarantine import QUARANTINE_HANDLERS
from arrears_router.admin.console.rates import IntakeRates
from arrears_router.admin.console.rendering import STATIC_DIR, template_config
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import OperationError
from arrears_router.metrics import metrics_dir
from arrears_router.store import StoreError

__all__ = ["console_router", "console_static", "template_config"]

# Its own pages only: no inline script, no other site's, and never inside another site's
# frame (a confirm button under someone else's page is a click away from being pressed).
SECURITY_HEADERS = [
    ResponseHeader(name="Content-Security-Policy", value=(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'")),
    ResponseHeader(name="X-Frame-Options", value="DENY"),
    ResponseHeader(name="Referrer-Policy", value="same-origin"),
    ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
]


def console_router(admin: Admin) -> Router:
    """Every console page, under ``/admin``; none in the API's OpenAPI schema."""
    live = admin.live
    rates = IntakeRates(lambda: metrics_dir(live.config.store.url, live.config.admin.metrics_dir))
    return Router(
        CONSOLE_PATH,
        route_handlers=[*LOGIN_HANDLERS, *OVERVIEW_HANDLERS, *PLUGIN_HANDLERS,
                        *PAYMENT_HANDLERS, *DELIVERY_HANDLERS, *QUARANTINE_HANDLERS,
                        *AUDIT_HANDLERS],
        dependencies={"rates": Provide(lambda: rates, use_cache=True, sync_to_thread=False)},
        middleware=[ConsoleAuth.using(lambda: live.tokens)],
        before_request=check_csrf,
        exception_handlers={HTTPException: on_refusal, OperationError: on_operation_error,
                            StoreError: on_store_failed},
        response_headers=SECURITY_HEADERS,
        # What a page shows is current and may be private: never from a cache.
        cache_control=CacheControlHeader(no_store=True),
        include_in_schema=False,
    )


def console_static() -> Router:
    """The console's style sheet and script, open to all (the login page uses them)."""
    return create_static_files_router(
        f"{CONSOLE_PATH}/static", directories=[STATIC_DIR], include_in_schema=False)
