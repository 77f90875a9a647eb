"""The audit log: every change, by whom and when, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from arrears_router.admin.api_common import Cursor, FormText
from arrears_router.admin.console.query import PAGE_SIZE, chosen, listed
from arrears_router.admin.console.rendering import page
from arrears_router.admin.context import Admin
from arrears_router.store import AuditAction

__all__ = ["AUDIT_HANDLERS"]


@get("/audit")
async def audit(request: Request[Any, Any, Any], admin: Admin, action: FormText = "",
                before: Cursor = None) -> Template:
    chosen_action = chosen(AuditAction, action, "action")
    entries, older = listed(await admin.store.audit(
        action=chosen_action, before=before, limit=PAGE_SIZE + 1), lambda e: e.id)
    return page(request, "audit.html", nav="audit", entries=entries, action=chosen_action,
                actions=list(AuditAction), older=older)


AUDIT_HANDLERS = [audit]
