"""What every admin API route shares: pages, the parameters' bounds, who asks, and errors.

Every error is JSON, ``{"status_code": N, "detail": "...", "extra": ...}``, as Litestar's own
are: a refused operation by its kind (404, 409, 400), a parameter out of bounds naming the
parameter, a store that failed 503; each route's possible ones are in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    ClientException,
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ServiceUnavailableException,
    ValidationException,
)
from litestar.params import Body, Parameter
from litestar.types import ExceptionHandlersMap

from arrears_router.admin.operations import Conflict, Invalid, NotFound, OperationError
from arrears_router.admin.tokens import Principal
from arrears_router.store import StoreError

__all__ = [
    "API_EXCEPTION_HANDLERS",
    "CHANGES",
    "MAX_ID",
    "NOT_FOUND",
    "READS",
    "STRICT",
    "STRICT_NOT_EMPTY",
    "ConflictException",
    "Cursor",
    "FormText",
    "Id",
    "Limit",
    "Page",
    "Text",
    "Time",
    "actor",
    "bounded",
    "page",
    "zoned",
]

T = TypeVar("T")

MAX_ID = 2**53 - 1
"""The largest id a JSON number keeps exact everywhere (JavaScript, the schema's floats); a
larger one is refused as a parameter, before a store (64-bit ids) could overflow on it."""

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
"""Where :func:`bounded` moves a filter's time: year 1 or 9999 in a far zone overflows
Python's datetime once made UTC."""

Id = Annotated[int, Parameter(ge=1, le=MAX_ID)]
Limit = Annotated[int, Parameter(ge=1, le=500, description="items a page, 1 to 500")]
Cursor = Annotated[int | None, Parameter(
    ge=1, le=MAX_ID, description="the `next` of the previous page: the items after it")]
Text = Annotated[str | None, Parameter(
    min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$",
    description="matched exactly")]
"""A filter's value: no control characters (PostgreSQL's text refuses NUL)."""
FormText = Annotated[str, Parameter(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]
"""A console form's field, as :data:`Text`; empty when it was not filled in."""
STRICT = Body(schema_extra={"additionalProperties": False})
"""A request body whose struct forbids unknown fields, as the schema then says: a misspelt
key (``sinse``) is refused, never ignored into a broader replay than meant."""
STRICT_NOT_EMPTY = Body(schema_extra={"additionalProperties": False, "minProperties": 1})
"""... whose fields are each optional, but not all."""
Time = Annotated[datetime | None, Parameter(
    description="ISO 8601 with a zone: 2026-11-25T09:00:00+08:00")]


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a listing, newest first."""

    items: list[T]
    next: int | None
    """Pass as ``after`` for the next page; null on the last one."""


def page(found: Sequence[T], limit: int, key: Callable[[T], int]) -> Page[T]:
    """The page of ``found``, read with ``limit + 1``: one more than a page says whether
    another page follows, so the last one's ``next`` is null rather than an empty page."""
    items = list(found[:limit])
    return Page(items=items, next=key(items[-1]) if len(found) > limit else None)


def zoned(source: str = "query", **times: datetime | None) -> None:
    """Refuse a time without a zone, 400 naming its parameter: which zone it meant is a guess
    that would silently shift a replay's range by hours."""
    for name, at in times.items():
        if at is not None and at.utcoffset() is None:
            problem = "a time needs a zone (2026-11-25T09:00:00+08:00 or ...Z)"
            raise ValidationException(f"{name}: {problem}; got {at.isoformat()}",
                                      extra=[{"message": problem, "key": name, "source": source}])


def bounded(at: datetime | None) -> datetime | None:
    """A zoned time as a filter may use it: moved into [1970, 9000), where every store holds
    it (nothing is stored outside), and far from where a change of zone overflows."""
    if at is None:
        return None
    return min(max(at, EARLIEST), LATEST)


def actor(request: Request[Principal, Any, Any]) -> str:
    """Who asks, as the audit log records it: the token's name."""
    return request.user.name


class ConflictException(ClientException):
    status_code = 409


READS: list[type[HTTPException]] = [NotAuthorizedException, ServiceUnavailableException]
"""What any route may answer besides its result (and 400 for its parameters)."""
CHANGES: list[type[HTTPException]] = [*READS, PermissionDeniedException]
"""... and a route that changes something, to a token that may only read."""
NOT_FOUND: list[type[HTTPException]] = [NotFoundException]


def _error(status: int, detail: str, extra: Any = None) -> Response[dict[str, Any]]:
    return Response({"status_code": status, "detail": detail, "extra": extra},
                    status_code=status)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    """Litestar's answer, with the parameters at fault named in the detail itself."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    named = [f"{e['key']}: {e['message']}" for e in extra
             if isinstance(e, dict) and e.get("key") and e.get("message")]
    detail = "; ".join(named) if named and exc.detail.startswith("Validation failed") else (
        exc.detail)
    return _error(400, detail, exc.extra)


_REFUSED = {NotFound: 404, Conflict: 409, Invalid: 400}


def _refused(_: Request[Any, Any, Any], exc: OperationError) -> Response[dict[str, Any]]:
    status = next((s for kind, s in _REFUSED.items() if isinstance(exc, kind)), 400)
    return _error(status, str(exc))


def _store_failed(_: Request[Any, Any, Any], exc: StoreError) -> Response[dict[str, Any]]:
    return _error(503, f"the store failed: {exc}")


API_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: _validation,
    OperationError: _refused,
    StoreError: _store_failed,
}
