"""Templates filled from a payment: request bodies, URLs, text messages.

``"{name}"`` placeholders are the payment's fields plus a few renderings people want
(``yuan``, ``paid_at`` in CST, ``order_nos``). A string that is one whole placeholder keeps the
field's type, so ``{"amount": "{total_fee}"}`` sends the integer, not its text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from string import Formatter
from typing import Any

import msgspec

from arrears_router.payment import CST, ArrearsPayment, Order

__all__ = [
    "TemplateError",
    "check_templates",
    "placeholders",
    "render",
    "sample_fields",
    "template_fields",
]

_WHOLE = re.compile(r"\{([a-z_]+)\}")

# Every field a template may name exists in every payment with the same type, so a template
# that renders for this sample renders for any payment: templates are checked once, at load.
_SAMPLE = ArrearsPayment(
    appid="wx0000000000000000", mch_id="1900000000", transaction_id="4200000000000000000000000000",
    total_fee=100, openid="o" * 28, bank_type="LQT", time_end="20260101000000", repay_no="R1",
    order_no=("O1",), order=(Order(order_no="O1"),), out_user_id="rider-1",
)


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


def sample_fields() -> dict[str, Any]:
    """A sample payment's fields, to check templates with at load (:func:`check_templates`):
    a template that renders with these renders with any payment's.
    """
    return template_fields(_SAMPLE)


def check_templates(templates: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    """Render each template with ``fields`` (see :func:`sample_fields`); the first that fails
    raises a :class:`TemplateError` led by its key (``body: unknown field {rider}; ...``),
    so a settings check names the setting to fix.
    """
    for key, template in templates.items():
        try:
            render(template, fields)
        except TemplateError as exc:
            raise TemplateError(f"{key}: {exc}") from None


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


@functools.lru_cache(maxsize=1024)  # a config's templates, asked at every call
def placeholders(template: str) -> frozenset[str]:
    """The field names a template string uses: ``{order[0]}`` and ``{order.0}`` use ``order``.

    :raises TemplateError: the template is malformed.
    """
    try:
        names = [name for _, name, _, _ in Formatter().parse(template) if name]
    except ValueError as exc:
        raise TemplateError(f"template {template!r}: {exc}") from None
    return frozenset(re.split(r"[.\[]", name, maxsplit=1)[0] for name in names)


def _field(fields: Mapping[str, Any], name: str) -> Any:
    if name not in fields:
        raise _unknown(fields, name)
    return fields[name]


def _unknown(fields: Mapping[str, Any], name: str) -> TemplateError:
    return TemplateError(f"unknown field {{{name}}}; known: {', '.join(sorted(fields))}")


class _Strict(dict[str, Any]):
    def __missing__(self, name: str) -> Any:
        raise _unknown(self, name)
