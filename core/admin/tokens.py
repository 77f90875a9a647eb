"""Who is asking: a named token, and what its scope lets it do.

Tokens are kept only as SHA-256 digests, and a presented one is compared with every known
one in constant time: neither a memory dump nor the time an answer takes gives one away.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from arrears_router.config import AdminToken, TokenScope

__all__ = ["BearerAuth", "Principal", "Tokens", "may_operate"]

log = logging.getLogger("arrears_router.admin")


class Principal(msgspec.Struct, frozen=True):
    """A token's holder: ``name`` is the actor the audit log records."""

    name: str
    scope: TokenScope

    @property
    def may_operate(self) -> bool:
        return self.scope is TokenScope.OPERATE


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Tokens:
    def __init__(self, tokens: Sequence[AdminToken]) -> None:
        self._known = [(_digest(t.token), Principal(t.name, t.scope)) for t in tokens]
        self._named = {principal.name: principal for _, principal in self._known}
        # Made from every token's value, apart from the digests above: a console session
        # signed with it ends when any token is changed or revoked, and outlives a restart.
        self.session_key = hashlib.sha256(b"".join(sorted(
            hashlib.sha256(b"arrears-router console session\0" + t.token.encode()).digest()
            for t in tokens))).digest()
        """The key console sessions are signed with."""

    def named(self, name: str) -> Principal | None:
        """The holder of the token named ``name`` as configured now; None once it is gone."""
        return self._named.get(name)

    def find(self, presented: str) -> Principal | None:
        """The holder of ``presented``, or None. Every known token is compared, found or not."""
        digest = _digest(presented)
        found = None
        for known, principal in self._known:
            if hmac.compare_digest(known, digest):
                found = principal
        return found


class BearerAuth(AbstractAuthenticationMiddleware):
    """``Authorization: Bearer TOKEN`` on every API route, else 401."""

    tokens: Callable[[], Tokens]
    """The tokens now (the config may change them), set by :meth:`using` on a subclass:
    Litestar builds the middleware itself."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> AuthenticationResult:
        scheme, _, token = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException(
                "this API needs a token: send `Authorization: Bearer TOKEN`",
                headers={"WWW-Authenticate": "Bearer"})
        principal = self.tokens().find(token.strip())
        if principal is None:  # the token presented is never logged: it may be one mistyped
            client = connection.client.host if connection.client else "?"
            log.warning("admin API: refused a token from %s: not a configured one", client)
            raise NotAuthorizedException("this token is not one of the configured admin tokens",
                                         headers={"WWW-Authenticate": "Bearer"})
        return AuthenticationResult(user=principal, auth=None)

    @classmethod
    def using(cls, tokens: Callable[[], Tokens]) -> type[BearerAuth]:
        return type("ConfiguredBearerAuth", (cls,), {"tokens": staticmethod(tokens)})


def may_operate(connection: ASGIConnection[Any, Principal, Any, Any], _: BaseRouteHandler) -> None:
    """A guard on every route that changes something: ``read`` tokens are refused, 403."""
    principal = connection.user
    if not principal.may_operate:
        raise PermissionDeniedException(
            f"the token {principal.name!r} has scope {principal.scope}: it may look, not change;"
            " this needs a token of scope operate")
