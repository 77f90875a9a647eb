"""The audit log: every change, by whom and when, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from arrears_router.admin.console.query import chosen
from arrears_router.admin.console.rendering import page
from arrears_router.admin.context import Admin
from arrears_router.store import AuditAction

__all__ = ["AUDIT_HANDLERS"]

PAGE_SIZE = 50


@get("/audit")
async def audit(request: Request[Any, Any, Any], admin: Admin, action: str = "",
                before: int | None = None) -> Template:
    chosen_action = chosen(AuditAction, action, "action")
    entries = await admin.store.audit(action=chosen_action, before=before, limit=PAGE_SIZE)
    return page(request, "audit.html", nav="audit", entries=entries, action=chosen_action,
                actions=list(AuditAction),
                older=entries[-1].id if len(entries) == PAGE_SIZE else None)


AUDIT_HANDLERS = [audit]
