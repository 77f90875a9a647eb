"""Templates filled from a payment: request bodies, URLs, text messages.

``"{name}"`` placeholders are the payment's fields plus a few renderings people want
(``yuan``, ``paid_at`` in CST, ``order_nos``). A string that is one whole placeholder keeps the
field's type, so ``{"amount": "{total_fee}"}`` sends the integer, not its text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from arrears_router.payment import CST, ArrearsPayment

__all__ = ["TemplateError", "render", "template_fields"]

_WHOLE = re.compile(r"\{([a-z_]+)\}")


class TemplateError(ValueError):
    """A template names a field the payment does not have, or is malformed."""


def template_fields(payment: ArrearsPayment) -> dict[str, Any]:
    fields: dict[str, Any] = msgspec.to_builtins(payment)
    fields["order"] = [msgspec.to_builtins(order) for order in payment.order]
    fields["order_no"] = list(payment.order_no)
    fields["yuan"] = f"{payment.total_fee / 100:.2f}"
    fields["paid_at"] = payment.paid_at.astimezone(CST).strftime("%Y-%m-%d %H:%M:%S") if (
        payment.paid_at) else payment.time_end
    fields["order_nos"] = ",".join(payment.order_no)
    return fields


def render(template: Any, fields: Mapping[str, Any]) -> Any:
    """``template`` (a string, or lists and tables of them) with its placeholders filled."""
    if isinstance(template, str):
        if whole := _WHOLE.fullmatch(template):
            return _field(fields, whole.group(1))
        try:
            return template.format_map(_Strict(fields))
        except TemplateError:
            raise
        except (ValueError, IndexError, AttributeError) as exc:
            raise TemplateError(f"template {template!r}: {exc}") from None
    if isinstance(template, Mapping):
        return {key: render(value, fields) for key, value in template.items()}
    if isinstance(template, list | tuple):
        return [render(value, fields) for value in template]
    return template


def _field(fields: Mapping[str, Any], name: str) -> Any:
    if name not in fields:
        raise _unknown(fields, name)
    return fields[name]


def _unknown(fields: Mapping[str, Any], name: str) -> TemplateError:
    return TemplateError(f"unknown field {{{name}}}; known: {', '.join(sorted(fields))}")


class _Strict(dict[str, Any]):
    def __missing__(self, name: str) -> Any:
        raise _unknown(self, name)
