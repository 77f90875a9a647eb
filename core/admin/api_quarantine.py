"""The admin API's quarantine and audit log: the authentic requests refused, running one
through the intake again once its cause is fixed, and who changed what."""

from __future__ import annotations

import base64
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from arrears_router.admin import operations
from arrears_router.admin.api_common import (
    CHANGES,
    NOT_FOUND,
    READS,
    Cursor,
    Id,
    Limit,
    Page,
    actor,
    page,
)
from arrears_router.admin.context import Admin
from arrears_router.admin.tokens import Principal, may_operate
from arrears_router.store import AuditAction, AuditEntry, QuarantineRecord

__all__ = [
    "QUARANTINE_HANDLERS",
    "BodyEncoding",
    "QuarantineDetail",
    "QuarantineItem",
    "ReingestOutcome",
    "quarantine_detail",
    "quarantine_item",
]


class QuarantineItem(msgspec.Struct, frozen=True, kw_only=True):
    """A refused authentic request, without its body."""

    id: int
    errcode: int
    reason: str
    appid: str
    mch_id: str
    transaction_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    hits: int
    body_bytes: int
    reingested_at: datetime | None
    reingest_errcode: int | None
    """What its last re-ingest answered: 0 when the payment is stored now."""
    reingest_reason: str
    reingested_by: str


class BodyEncoding(StrEnum):
    UTF8 = "utf-8"
    BASE64 = "base64"
    """The body was not UTF-8 (a hostile or garbled request): its bytes, in base64."""


class QuarantineDetail(QuarantineItem, frozen=True, kw_only=True):
    body: str
    """As received: text, or base64 as ``body_encoding`` says."""
    body_encoding: BodyEncoding


def _fields(record: QuarantineRecord) -> dict[str, Any]:
    fields = msgspec.structs.asdict(record)
    fields["body_bytes"] = len(fields.pop("body"))
    return fields


def quarantine_item(record: QuarantineRecord) -> QuarantineItem:
    """As a listing shows it: without its body."""
    return QuarantineItem(**_fields(record))


def quarantine_detail(record: QuarantineRecord) -> QuarantineDetail:
    """Whole, its body as text when it is UTF-8, else in base64."""
    try:
        body, encoding = record.body.decode(), BodyEncoding.UTF8
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(record.body).decode(), BodyEncoding.BASE64
    return QuarantineDetail(**_fields(record), body=body, body_encoding=encoding)


@get("/quarantine", summary="Refused authentic requests, newest first", raises=READS)
async def list_quarantine(
    admin: Admin,
    errcode: Annotated[int | None, Parameter(ge=1, le=99_999)] = None,
    limit: Limit = 50, after: Cursor = None,
) -> Page[QuarantineItem]:
    found = await admin.store.quarantined(limit=limit + 1, before=after, errcode=errcode)
    listed = page(found, limit, lambda r: r.id)
    return Page(items=[quarantine_item(r) for r in listed.items], next=listed.next)


@get("/quarantine/{quarantine_id:int}", summary="A refused request, its body as received",
     raises=[*READS, *NOT_FOUND])
async def show_quarantine(admin: Admin, quarantine_id: Id) -> QuarantineDetail:
    record = await admin.store.quarantine_record(quarantine_id)
    if record is None:
        raise operations.NotFound(f"no quarantined request {quarantine_id}")
    return quarantine_detail(record)


class ReingestOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What the intake answered the body, as WeChat would have been answered."""

    errcode: int
    errmsg: str
    quarantine: QuarantineDetail


@post("/quarantine/{quarantine_id:int}/reingest", guards=[may_operate], status_code=200,
      summary="Run a refused request through the intake again, with the config as it is now",
      description="Stored once (again: errcode 0, already stored, no second delivery), or"
                  " refused again with the reason it has now; recorded on the request.",
      raises=[*CHANGES, *NOT_FOUND])
async def reingest(admin: Admin, request: Request[Principal, Any, Any],
                   quarantine_id: Id) -> ReingestOutcome:
    outcome = await operations.reingest(admin, quarantine_id, actor(request))
    return ReingestOutcome(errcode=outcome.errcode, errmsg=outcome.errmsg,
                           quarantine=quarantine_detail(outcome.quarantine))


@get("/audit", summary="Every change ops and the config made, newest first", raises=READS)
async def list_audit(admin: Admin, action: AuditAction | None = None, limit: Limit = 50,
                     after: Cursor = None) -> Page[AuditEntry]:
    found = await admin.store.audit(limit=limit + 1, before=after, action=action)
    return page(found, limit, lambda e: e.id)


QUARANTINE_HANDLERS: list[ControllerRouterHandler] = [
    list_quarantine, show_quarantine, reingest, list_audit,
]
