"""Signing in with a token, and out: the console's only pages open without a session."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import Redirect

from arrears_router.admin.console.guard import (
    CONSOLE_PATH,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    cookie,
    login_csrf,
    safe_next,
)
from arrears_router.admin.console.rendering import page
from arrears_router.admin.console.sessions import SESSION_TTL_S, open_session, seal
from arrears_router.admin.context import Admin

__all__ = ["LOGIN_HANDLERS"]

log = logging.getLogger("arrears_router.admin")

LOGIN_PATH = "/login"
OPEN = {"exclude_from_auth": True}
"""The opt that lets a handler answer without a session."""
LOGIN_FORM_TTL_S = 3600


class LoginForm(msgspec.Struct, frozen=True, kw_only=True):
    token: str = ""
    next: str = ""


def _login_page(request: Request[Any, Any, Any], *, next_page: str, csrf: str,
                error: str = "", status: int = 200) -> Response[Any]:
    response = page(request, "login.html", status=status, csrf=csrf, next_page=next_page,
                    error=error)
    response.set_cookie(cookie(request, LOGIN_CSRF_COOKIE, csrf,
                               path=f"{CONSOLE_PATH}{LOGIN_PATH}", max_age=LOGIN_FORM_TTL_S))
    return response


@get(LOGIN_PATH, opt=OPEN)
async def login_page(request: Request[Any, Any, Any],
                     next_page: Annotated[str, Parameter(query="next")] = "") -> Response[Any]:
    return _login_page(request, next_page=safe_next(next_page), csrf=login_csrf())


@post(LOGIN_PATH, opt=OPEN, status_code=303)
async def log_in(request: Request[Any, Any, Any], admin: Admin,
                 data: Annotated[LoginForm, Body(media_type=RequestEncodingType.URL_ENCODED)]
                 ) -> Response[Any]:
    tokens = admin.live.tokens
    principal = tokens.find(data.token.strip())
    client = request.client.host if request.client else "?"
    if principal is None:  # the token presented is never logged: it may be one mistyped
        log.warning("console sign-in refused from %s: not a configured admin token", client)
        return _login_page(request, next_page=safe_next(data.next), csrf=login_csrf(),
                           error="That is not one of the configured admin tokens.", status=401)
    log.info("console: %s (%s) signed in from %s", principal.name, principal.scope, client)
    response = Redirect(safe_next(data.next), status_code=303)
    response.set_cookie(cookie(request, SESSION_COOKIE,
                               seal(open_session(principal), tokens.session_key),
                               max_age=SESSION_TTL_S))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=f"{CONSOLE_PATH}{LOGIN_PATH}")
    return response


@post("/logout", status_code=303)
async def log_out() -> Response[Any]:
    response = Redirect(f"{CONSOLE_PATH}{LOGIN_PATH}", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=CONSOLE_PATH)
    return response


LOGIN_HANDLERS = [login_page, log_in, log_out]
