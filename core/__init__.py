"""arrears-router: receives WeChat ride-code arrears-payment notifications and fans them out.

This module is the public API for plugin authors; everything else in ``core`` is internal.
"""

from __future__ import annotations

from core.config import ConfigError, store_url
from core.delivery import Delivery, PermanentError, RetryableError
from core.hookspecs import hookimpl
from core.http import HttpPlugin, raise_for_status, retry_after
from core.payment import CST, ArrearsPayment, Order
from core.templates import TemplateError, render, template_fields

__all__ = [
    "CST",
    "ArrearsPayment",
    "ConfigError",
    "Delivery",
    "HttpPlugin",
    "Order",
    "PermanentError",
    "RetryableError",
    "TemplateError",
    "hookimpl",
    "raise_for_status",
    "render",
    "retry_after",
    "store_url",
    "template_fields",
]
