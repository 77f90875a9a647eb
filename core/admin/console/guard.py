"""Who may see and do what in the console: the session cookie on every request, the CSRF
token on every form, and what a refusal looks like to a person (a page, not JSON).

Only the cookie signs a request in: a ``Bearer`` header is ignored here, so a change is
only ever made from a form the console served.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.response import Redirect

from arrears_router.admin.console.rendering import page
from arrears_router.admin.console.sessions import Session, unseal
from arrears_router.admin.operations import Conflict, Invalid, NotFound, OperationError
from arrears_router.admin.tokens import Tokens
from arrears_router.store import StoreError

__all__ = [
    "CONSOLE_PATH",
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "ConsoleAuth",
    "check_csrf",
    "cookie",
    "login_csrf",
    "on_operation_error",
    "on_refusal",
    "on_store_failed",
    "safe_next",
]

CONSOLE_PATH = "/admin"
SESSION_COOKIE = "arrears_console"
LOGIN_CSRF_COOKIE = "arrears_console_login"
"""The login form's CSRF token: there is no session yet to hold one."""


def cookie(request: Request[Any, Any, Any], key: str, value: str, *,
           path: str = CONSOLE_PATH, max_age: int | None = None) -> Cookie:
    """A console cookie: never readable by scripts, never sent from another site, and only
    over TLS when the console is reached over TLS (``https`` behind a proxy too: uvicorn
    reads its forwarded headers)."""
    return Cookie(key=key, value=value, path=path, max_age=max_age, httponly=True,
                  samesite="strict", secure=request.url.scheme == "https")


def login_csrf() -> str:
    return secrets.token_urlsafe(32)


class ConsoleAuth(AbstractAuthenticationMiddleware):
    """The session cookie, still signed with the tokens' key and naming a token still
    configured with its scope; else 401, which :func:`on_refusal` turns into the login page."""

    tokens: Callable[[], Tokens]
    """The tokens now, set by :meth:`using` on a subclass: Litestar builds the middleware."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> AuthenticationResult:
        tokens = self.tokens()
        session = unseal(connection.cookies.get(SESSION_COOKIE, ""), tokens.session_key)
        principal = None if session is None else tokens.named(session.name)
        if session is None or principal is None or principal.scope != session.scope:
            raise NotAuthorizedException("sign in with a token")
        return AuthenticationResult(user=principal, auth=session)

    @classmethod
    def using(cls, tokens: Callable[[], Tokens]) -> type[ConsoleAuth]:
        return type("ConfiguredConsoleAuth", (cls,), {"tokens": staticmethod(tokens)})


async def check_csrf(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Before every POST: its form's ``csrf`` must be the session's (the login form's: its
    cookie's), compared in constant time; else 403 and nothing is done."""
    if request.method != "POST":
        return None
    session: Session | None = request.scope.get("auth")
    expected = session.csrf if session else request.cookies.get(LOGIN_CSRF_COOKIE, "")
    presented = (await request.form()).get("csrf", "")
    if expected and isinstance(presented, str) and hmac.compare_digest(
            presented.encode(), expected.encode()):
        return None
    return page(request, "refused.html", status=403, title="Form refused",
                reason="This form did not come from a page of this console (its CSRF token"
                       " is missing or wrong), so nothing was changed. Reload the page and"
                       " try again.")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console page, never another site."""
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not parts.path.startswith(f"{CONSOLE_PATH}/") \
            or parts.path.startswith(f"{CONSOLE_PATH}/login"):
        return f"{CONSOLE_PATH}/"
    return urlunsplit(("", "", parts.path, parts.query, ""))  # as parsed: nothing else


def on_refusal(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Not signed in: to the login page (a live part's refresh too: it reloads the page when
    redirected); otherwise (not allowed, a bad form or query) a page saying why."""
    if isinstance(exc, NotAuthorizedException):
        back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = safe_next(back) if request.method == "GET" else f"{CONSOLE_PATH}/"
        return Redirect(f"{CONSOLE_PATH}/login?next={quote(target)}", status_code=303)
    return page(request, "refused.html", status=exc.status_code,
                title="Not allowed" if exc.status_code == 403 else "Cannot do that",
                reason=exc.detail)


_STATUS = {NotFound: 404, Conflict: 409, Invalid: 400}


def on_store_failed(request: Request[Any, Any, Any], exc: StoreError) -> Response[Any]:
    """The store could not answer: a page saying so, the console still usable."""
    return page(request, "refused.html", status=503, title="The store did not answer",
                reason=str(exc))


def on_operation_error(request: Request[Any, Any, Any], exc: OperationError) -> Response[Any]:
    """An operation refused (no such delivery, a plan that already ran): why, as a page."""
    status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 409)
    return page(request, "refused.html", status=status,
                title="Not found" if status == 404 else "Not done", reason=str(exc))
