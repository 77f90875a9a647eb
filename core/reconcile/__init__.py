"""Reconciling WeChat Pay's daily trade bill with the payments the router stored.

``bill`` reads a downloaded bill, ``payments`` finds the stored payments of a merchant's
day, ``compare`` sorts them into the report of ``report``, ``run`` puts the three together,
and ``history`` keeps each report in the router's store. ``arrears-router reconcile`` is
the command (``cli/reconcile.py``); docs/reconcile.md says what is assumed of the bill.

Nothing is imported here: ``arrears_router`` exports the report's types, and must not pull
in the rest with them.
"""
