"""The reports' table in a SQLite store (the statements are shared, in :mod:`.history`)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from arrears_router.reconcile.history import (
    INSERT_REPORT,
    NAME,
    RECENT_REPORTS,
    HistoryError,
    encode_report,
    report_of_row,
    tables_made,
)
from arrears_router.reconcile.report import ReconcileReport
from arrears_router.sqlite import connect, migrate, schema_version

__all__ = ["MIGRATIONS", "open_history"]

BUSY_TIMEOUT = 5.0
"""Seconds to wait for the store's write lock, which a running router takes in turns."""

# Each entry upgrades the tables by one version; never edit one that has shipped. The version
# is kept in reconcile_schema (arrears_router.sqlite), not in PRAGMA user_version, the router's.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE reconcile_reports (
        id INTEGER PRIMARY KEY,
        mch_id TEXT NOT NULL,
        day TEXT NOT NULL,
        made_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        report TEXT NOT NULL
    );
    CREATE INDEX reconcile_reports_by_day ON reconcile_reports (mch_id, day)
    """,
)


def open_history(path: str, *, write: bool) -> _History:
    if not write and not Path(path).is_file():
        raise HistoryError(f"no store at {path}: the router creates it when it first starts")
    try:
        db = connect(path, readonly=not write, busy_timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise HistoryError(f"cannot open the store {path}: {exc}") from exc
    return _History(db, made=tables_made(
        db, write=write, known=len(MIGRATIONS), migrate=lambda: migrate(db, NAME, MIGRATIONS),
        version=lambda: schema_version(db, NAME), failed=sqlite3.Error, describe=str,
        where=path))


class _History:
    def __init__(self, db: sqlite3.Connection, *, made: bool) -> None:
        self._db = db
        self._made = made
        """Whether the tables exist: read-only, none are made, and none means no reports."""

    def keep(self, report: ReconcileReport) -> ReconcileReport:
        values = encode_report(report)
        try:  # one statement, committed on its own (the connection is in autocommit)
            ((report_id,),) = self._db.execute(INSERT_REPORT, values).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot keep the report: {exc}") from exc
        return report_of_row(report_id, values[-1])

    def recent(self, limit: int) -> list[ReconcileReport]:
        if not self._made:
            return []
        try:
            rows = self._db.execute(RECENT_REPORTS, (limit,)).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the reports: {exc}") from exc
        return [report_of_row(report_id, text) for report_id, text in rows]

    def close(self) -> None:
        self._db.close()
