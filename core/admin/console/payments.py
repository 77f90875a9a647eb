"""Payments: found by transaction_id, rider or bill, and each shown whole with its deliveries."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from arrears_router.admin.api_common import Cursor, FormText
from arrears_router.admin.console.query import PAGE_SIZE, listed
from arrears_router.admin.console.rendering import page
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import payment_details, shown

__all__ = ["PAYMENT_HANDLERS"]


@get("/payments")
async def search_payments(request: Request[Any, Any, Any], admin: Admin,
                          transaction_id: FormText = "", out_user_id: FormText = "",
                          repay_no: FormText = "", before: Cursor = None) -> Template:
    """The newest payments matching what the form filled in (all of them, none filled in)."""
    wanted = {"transaction_id": transaction_id.strip(), "out_user_id": out_user_id.strip(),
              "repay_no": repay_no.strip()}
    found, older = listed([shown(e) for e in await admin.store.search_events(
        transaction_id=wanted["transaction_id"] or None,
        out_user_id=wanted["out_user_id"] or None, repay_no=wanted["repay_no"] or None,
        before=before, limit=PAGE_SIZE + 1)], lambda e: e.id)
    return page(request, "payments.html", nav="payments", wanted=wanted, events=found,
                older=older)


@get("/payments/{transaction_id:str}")
async def payment(request: Request[Any, Any, Any], admin: Admin, transaction_id: str
                  ) -> Template:
    return page(request, "payment.html", nav="payments", transaction_id=transaction_id,
                details=await payment_details(admin.store, transaction_id))


PAYMENT_HANDLERS = [search_payments, payment]
