"""Every reconciliation report, kept in tables of the router's own store (SQLite or
PostgreSQL) through the kits plugins use for theirs: ``reconcile_*`` tables, versioned as
``reconcile``. The statements are shared; :mod:`.history_sqlite` and
:mod:`.history_postgres` hold each store's tables and connections.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

from arrears_router.postgres import is_postgres
from arrears_router.reconcile.report import ReconcileReport
from arrears_router.sqlite import SchemaError, store_path

__all__ = ["INSERT_REPORT", "NAME", "RECENT_REPORTS", "History", "HistoryError",
           "encode_report", "open_history", "report_of_row", "tables_made", "too_new"]

NAME = "reconcile"
"""The tables' prefix, and whose version the store's kit keeps."""
# A report is kept whole, as JSON, beside the columns a look-up wants; its id is the row's.
INSERT_REPORT = """
    INSERT INTO reconcile_reports (mch_id, day, made_at, ok, report)
    VALUES (?, ?, ?, ?, ?) RETURNING id
"""
RECENT_REPORTS = "SELECT id, report FROM reconcile_reports ORDER BY id DESC LIMIT ?"

_decoder = msgspec.json.Decoder(ReconcileReport)


class HistoryError(Exception):
    """The reports cannot be kept or read; the message says why, never a store's URL."""


class History(Protocol):
    def keep(self, report: ReconcileReport) -> ReconcileReport:
        """Keep ``report``, committed before returning; the report with its id."""

    def recent(self, limit: int) -> list[ReconcileReport]:
        """The reports kept, newest first, at most ``limit``."""

    def close(self) -> None: ...


def open_history(store_url: str, *, write: bool) -> History:
    """The reports in the store at ``store_url``; ``write`` brings their tables up to date
    (creating them the first time), else they are only read, never locking the store."""
    if is_postgres(store_url):
        from arrears_router.reconcile import history_postgres  # the driver is an extra

        return history_postgres.open_history(store_url, write=write)
    from arrears_router.reconcile import history_sqlite

    return history_sqlite.open_history(store_path(store_url, NAME), write=write)


def encode_report(report: ReconcileReport) -> tuple[str, str, str, int, str]:
    """The parameters of :data:`INSERT_REPORT`."""
    return (report.mch_id, report.day, report.made_at.isoformat(), int(report.ok),
            msgspec.json.encode(report).decode())


def report_of_row(report_id: int, text: str) -> ReconcileReport:
    return msgspec.structs.replace(_decoder.decode(text), id=report_id)


def too_new(found: int, known: int) -> HistoryError:
    return HistoryError(f"the reconcile tables are version {found}; this arrears-router knows"
                        f" up to {known}: upgrade it")


class _Closing(Protocol):
    def close(self) -> None: ...


def tables_made(db: _Closing, *, write: bool, known: int, migrate: Callable[[], None],
                version: Callable[[], int], failed: type[Exception],
                describe: Callable[[Exception], str], where: str) -> bool:
    """Bring the tables up to date (``write``), else only read their version; whether they
    exist. On any failure ``db`` is closed and HistoryError says why: a driver's error
    (``failed``, told by ``describe``), or tables newer than the ``known`` migrations."""
    try:
        if write:
            migrate()
            return True
        found = version()
    except SchemaError as exc:
        db.close()
        raise too_new(exc.version, known) from None
    except failed as exc:
        db.close()
        raise HistoryError(f"cannot set up the reconcile tables in {where}: {describe(exc)}"
                           ) from exc
    if found > known:
        db.close()
        raise too_new(found, known)
    return found > 0
