"""The quarantine: refused authentic requests, and re-ingesting one once its cause is fixed."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.response import Redirect, Template

from arrears_router.admin.api_common import Cursor, FormText, Id
from arrears_router.admin.console.guard import CONSOLE_PATH
from arrears_router.admin.console.query import PAGE_SIZE, chosen, listed
from arrears_router.admin.console.rendering import page
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import NotFound, reingest
from arrears_router.admin.tokens import Principal, may_operate
from arrears_router.metrics import QUARANTINED

__all__ = ["QUARANTINE_HANDLERS"]


@get("/quarantine")
async def quarantine(request: Request[Any, Any, Any], admin: Admin, errcode: FormText = "",
                     before: Cursor = None) -> Template:
    code = chosen(int, errcode, "errcode")
    found, older = listed(await admin.store.quarantined(
        errcode=code, before=before, limit=PAGE_SIZE + 1), lambda q: q.id)
    return page(request, "quarantine.html", nav="quarantine", requests=found,
                errcode=code, errcodes=QUARANTINED, stats=await admin.store.quarantine_stats(),
                older=older)


@get("/quarantine/{quarantine_id:int}")
async def quarantined(request: Request[Any, Any, Any], admin: Admin, quarantine_id: Id
                      ) -> Template:
    record = await admin.store.quarantine_record(quarantine_id)
    if record is None:
        raise NotFound(f"no quarantined request {quarantine_id}")
    return page(request, "quarantined.html", nav="quarantine", record=record,
                body=record.body.decode(errors="replace"))


@post("/quarantine/{quarantine_id:int}/reingest", guards=[may_operate], status_code=303)
async def reingest_one(request: Request[Principal, Any, Any], admin: Admin, quarantine_id: Id
                       ) -> Redirect:
    await reingest(admin, quarantine_id, request.user.name)
    return Redirect(f"{CONSOLE_PATH}/quarantine/{quarantine_id}", status_code=303)


QUARANTINE_HANDLERS = [quarantine, quarantined, reingest_one]
