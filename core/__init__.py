"""arrears-router: receives WeChat ride-code arrears-payment notifications and fans them out.

This module is the public API for plugin authors; everything else is internal.
"""

from __future__ import annotations

from arrears_router.commands import Commands
from arrears_router.config import ConfigError, store_url
from arrears_router.delivery import Delivery
from arrears_router.errors import PermanentError, RetryableError
from arrears_router.hookspecs import hookimpl
from arrears_router.http import HttpPlugin, raise_for_status, retry_after
from arrears_router.payment import CST, ArrearsPayment, Order
from arrears_router.reconcile.report import ReconcileLine, ReconcileReport
from arrears_router.templates import TemplateError, render, template_fields

__all__ = [
    "CST",
    "ArrearsPayment",
    "Commands",
    "ConfigError",
    "Delivery",
    "HttpPlugin",
    "Order",
    "PermanentError",
    "ReconcileLine",
    "ReconcileReport",
    "RetryableError",
    "TemplateError",
    "hookimpl",
    "raise_for_status",
    "render",
    "retry_after",
    "store_url",
    "template_fields",
]
