"""A console session: who signed in, with which scope, until when, and its CSRF secret.

It lives in the browser's cookie, signed (HMAC-SHA256) with a key the configured tokens make
(:attr:`~arrears_router.admin.tokens.Tokens.session_key`): nothing is kept server-side, so a
session outlives a restart of the admin process, and changing or revoking any token ends
every session. Each request also checks that the session's token name is still configured
with the same scope.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time

import msgspec

from arrears_router.admin.tokens import Principal
from arrears_router.config import TokenScope

__all__ = ["SESSION_TTL_S", "Session", "open_session", "seal", "unseal"]

SESSION_TTL_S = 8 * 3600
"""A working day: then the console asks for the token again."""


class Session(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    """The token's name: the actor the audit log records for the session's changes."""
    scope: TokenScope
    expires: int
    """Unix seconds."""
    csrf: str
    """What every form of the session must send back: a forged form cannot know it."""


_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(Session).decode


def open_session(principal: Principal) -> Session:
    return Session(name=principal.name, scope=principal.scope,
                   expires=int(time.time()) + SESSION_TTL_S, csrf=secrets.token_urlsafe(32))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def seal(session: Session, key: bytes) -> str:
    """The cookie's value: the session and its signature, both base64url."""
    body = _b64(_encode(session))
    return f"{body}.{_b64(_mac(key, body))}"


def unseal(cookie: str, key: bytes) -> Session | None:
    """The session in ``cookie`` if ``key`` signed it and it has not expired, else None."""
    body, _, signature = cookie.partition(".")
    try:
        presented = _unb64(signature)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(presented, _mac(key, body)):
        return None
    try:
        session = _decode(_unb64(body))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None
    return session if session.expires > time.time() else None
