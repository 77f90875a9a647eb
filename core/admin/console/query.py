"""What a page's filter form sent: a select's "all" option sends an empty value."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from litestar.exceptions import ValidationException

__all__ = ["chosen"]

T = TypeVar("T")


def chosen(kind: Callable[[str], T], text: str, name: str) -> T | None:
    """``text`` read as ``kind``; None when empty (all); 400 naming ``name`` when unreadable."""
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValidationException(f"{name}: {text!r} is not one of the choices") from None
