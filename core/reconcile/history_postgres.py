"""The reports' table in a PostgreSQL store (the statements are shared, in :mod:`.history`).

Imported only for a ``postgresql://`` store: the driver is the ``arrears-router[postgresql]``
extra. No message here names the store's URL, which may hold a password.
"""

from __future__ import annotations

from typing import Any

import psycopg

from arrears_router.postgres import (
    connect,
    describe_error,
    migrate,
    qmark,
    schema_version,
)
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

__all__ = ["MIGRATIONS", "open_history"]

# Each entry upgrades the tables by one version; never edit one that has shipped. The version
# is the row 'reconcile' of schema_versions (arrears_router.postgres), beside the router's.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE reconcile_reports (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        mch_id text NOT NULL,
        day text NOT NULL,
        made_at text NOT NULL,
        ok integer NOT NULL,
        report text NOT NULL
    );
    CREATE INDEX reconcile_reports_by_day ON reconcile_reports (mch_id, day)
    """,
)
STATEMENT_TIMEOUT = 30.0
"""Seconds a statement may take: a report of a day gone wrong can be large."""


def open_history(url: str, *, write: bool) -> _History:
    try:
        db = connect(url, readonly=not write, lock_timeout=5.0,
                     statement_timeout=STATEMENT_TIMEOUT)
    except psycopg.Error as exc:
        raise HistoryError(f"cannot open the PostgreSQL store: {describe_error(exc)}") from exc
    return _History(db, made=tables_made(
        db, write=write, known=len(MIGRATIONS), migrate=lambda: migrate(db, NAME, MIGRATIONS),
        version=lambda: schema_version(db, NAME), failed=psycopg.Error,
        describe=describe_error, where="the PostgreSQL store"))


class _History:
    def __init__(self, db: psycopg.Connection[Any], *, made: bool) -> None:
        self._db = db
        self._made = made
        """Whether the tables exist: read-only, none are made, and none means no reports."""

    def keep(self, report: ReconcileReport) -> ReconcileReport:
        values = encode_report(report)
        try:
            with self._db.transaction():
                row = self._db.execute(qmark(INSERT_REPORT), values).fetchone()
        except psycopg.Error as exc:
            raise HistoryError(f"cannot keep the report: {describe_error(exc)}") from exc
        assert row is not None  # RETURNING gives the row inserted
        return report_of_row(int(row[0]), values[-1])

    def recent(self, limit: int) -> list[ReconcileReport]:
        if not self._made:
            return []
        try:
            with self._db.transaction():
                rows = self._db.execute(qmark(RECENT_REPORTS), (limit,)).fetchall()
        except psycopg.Error as exc:
            raise HistoryError(f"cannot read the reports: {describe_error(exc)}") from exc
        return [report_of_row(int(report_id), text) for report_id, text in rows]

    def close(self) -> None:
        self._db.close()
