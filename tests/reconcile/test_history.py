"""Reports kept in the router's own store, SQLite or PostgreSQL, through the plugins' kits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from arrears_router import ReconcileLine, ReconcileReport
from arrears_router.reconcile.history import HistoryError, open_history
from arrears_router.reconcile.report import ReconcileCounts
from arrears_router.store import open_store
from tests.harness import postgres_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'router.db'}"
        return
    with postgres_schema() as url:
        yield url


def made_store(url: str) -> None:
    """The router's own store, as its first start makes it."""

    async def make() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    asyncio.run(make())


def report(day: str, *, missing: int = 0) -> ReconcileReport:
    lines = tuple(ReconcileLine(transaction_id=f"T{n}", bill_line=n + 2, bill_fen=300,
                                status="SUCCESS", time=f"{day} 10:00:00", openid="oRider")
                  for n in range(missing))
    return ReconcileReport(
        mch_id="1900000201", day=day, made_at=datetime(2026, 11, 26, 10, tzinfo=UTC),
        bill=f"bill-{day}.csv", bill_sha256="ab" * 32, bill_lines=3 + missing,
        counts=ReconcileCounts(matched=3, missing=missing, unexpected=0, amount_differs=0,
                               other_trades=0),
        matched_fen=900, missing=lines,
    )


def test_reports_are_kept_whole_and_listed_newest_first(store_url: str) -> None:
    made_store(store_url)
    with closing(open_history(store_url, write=False)) as history:
        assert history.recent(10) == []  # none kept yet: no tables made by a read
    with closing(open_history(store_url, write=True)) as history:
        first = history.keep(report("2026-11-24"))
        second = history.keep(report("2026-11-25", missing=2))
    assert first.id > 0
    assert second.id > first.id
    assert second == msgspec.structs.replace(report("2026-11-25", missing=2), id=second.id)
    with closing(open_history(store_url, write=False)) as history:
        assert history.recent(10) == [second, first]
        assert history.recent(1) == [second]
    assert not second.ok
    assert first.ok


def test_a_read_of_a_store_not_made_yet_says_so(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="no store at"):
        open_history(f"sqlite:///{tmp_path / 'absent.db'}", write=False)
