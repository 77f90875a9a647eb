"""One reconciliation: a bill read whole, against the store's payments of its merchant's day."""

from __future__ import annotations

from datetime import date, datetime

from arrears_router.reconcile.bill import Bill
from arrears_router.reconcile.compare import compare
from arrears_router.reconcile.payments import stored_on, stored_with_ids
from arrears_router.reconcile.report import ReconcileReport
from arrears_router.store import Store

__all__ = ["reconcile"]


async def reconcile(store: Store, bill: Bill, *, mch_id: str, day: date, bill_name: str,
                    made_at: datetime) -> ReconcileReport:
    """The report of ``bill`` against what ``store`` holds of ``mch_id``'s ``day``. A bill
    payment not paid that day by the store's account is looked up by its transaction_id
    before it is called missing: stored it was, only on another day or received later."""
    stored = await stored_on(store, mch_id, day)
    unknown = [trade.transaction_id for trade in bill.payments
               if trade.transaction_id not in stored]
    elsewhere = await stored_with_ids(store, mch_id, unknown)
    return compare(bill, mch_id=mch_id, day=day, stored=stored, elsewhere=elsewhere,
                   bill_name=bill_name, made_at=made_at)
