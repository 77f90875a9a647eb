"""What a page's filter form sent (a select's "all" option sends an empty value), and the
page of what it found."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from litestar.exceptions import ValidationException

from arrears_router.admin.api_common import page

__all__ = ["PAGE_SIZE", "chosen", "listed"]

PAGE_SIZE = 50
"""Rows a page; one more is read, to tell whether an older page follows."""

T = TypeVar("T")


def chosen(kind: Callable[[str], T], text: str, name: str) -> T | None:
    """``text`` read as ``kind``; None when empty (all); 400 naming ``name`` when unreadable."""
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise ValidationException(f"{name}: {text!r} is not one of the choices") from None


def listed(found: Sequence[T], key: Callable[[T], int]) -> tuple[list[T], int | None]:
    """The page of ``found`` (read with ``PAGE_SIZE + 1``), and the cursor of the page after
    it: None on the last page, which is then never an empty one."""
    paged = page(found, PAGE_SIZE, key)
    return paged.items, paged.next
