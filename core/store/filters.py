"""The WHERE clauses of both backends' filtered reads, written with only the filters given:
a statement names just what is asked, so that the planner finds an index for it."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["event_search", "newest_page", "where_given"]


def where_given(filters: Sequence[tuple[str, object]]) -> tuple[str, list[object]]:
    """The conditions whose value is given (not None), joined by AND, and their values."""
    given = [(condition, value) for condition, value in filters if value is not None]
    return (" AND ".join(condition for condition, _ in given) or "true",
            [value for _, value in given])


def newest_page(select: str, before: int | None, column: str, value: object, limit: int,
                mark: str) -> tuple[str, list[object]]:
    """``select``'s rows newest first: of ids below ``before`` and of ``column`` equal to
    ``value``, each if not None; ``mark`` is the backend's placeholder."""
    where, args = where_given(((f"id < {mark}", before), (f"{column} = {mark}", value)))
    return f"{select} WHERE {where} ORDER BY id DESC LIMIT {mark}", [*args, limit]


def event_search(mark: str, *, transaction_id: str | None, out_user_id: str | None,
                 repay_no: str | None, since: object, until: object, before: int | None,
                 ) -> tuple[str, list[object]]:
    """``Store.search_events``'s conditions, the times as the backend stores them."""
    return where_given((
        (f"transaction_id = {mark}", transaction_id),
        # Says what the partial index events_by_rider holds, so that it is used.
        (f"out_user_id = {mark} AND out_user_id <> ''", out_user_id),
        (f"repay_no = {mark}", repay_no),
        (f"received_at >= {mark}", since),
        (f"received_at < {mark}", until),
        (f"id < {mark}", before),
    ))
