"""The bench's own connection to a store's database, SQLite or PostgreSQL.

Its few queries (the prefill's done deliveries, the probe's reads) are written once, in the
SQL both databases speak, with ``?`` placeholders; the times they read come back as unix
seconds, whichever type the store keeps them in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from arrears_router.postgres import qmark
from arrears_router.store import is_postgres_url
from arrears_router.store.sqlite_schema import file_of

__all__ = ["Database", "unix_seconds"]


class Database:
    """A connection to the store at ``url``; ``readonly`` for reading beside a live router."""

    def __init__(self, url: str, *, readonly: bool) -> None:
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None
        if is_postgres_url(url):
            from arrears_router.store.postgres_schema import connect

            self._pg = connect(url, autocommit=True, readonly=readonly)
            # The router's 4 s bound is for answering WeChat; the bench's bulk insert and
            # its reads over a whole run's rows may take longer.
            self._pg.execute("SET statement_timeout = 0")
        else:
            path = file_of(url)
            assert path is not None
            self._sqlite = (
                sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
                if readonly else sqlite3.connect(Path(path), isolation_level=None))

    @property
    def postgres(self) -> bool:
        return self._pg is not None

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()

    def rows(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            found: list[tuple[Any, ...]] = self._pg.execute(qmark(sql), args).fetchall()
            return found
        assert self._sqlite is not None
        return self._sqlite.execute(sql, args).fetchall()

    def one(self, sql: str, args: Sequence[object] = ()) -> tuple[Any, ...]:
        return self.rows(sql, args)[0]

    def write(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """``(sql, args)`` statements in one transaction, committed."""
        if self._pg is not None:
            with self._pg.transaction():
                for sql, args in statements:
                    self._pg.execute(qmark(sql), args)
            return
        assert self._sqlite is not None
        self._sqlite.execute("BEGIN IMMEDIATE")
        try:
            for sql, args in statements:
                self._sqlite.execute(sql, args)
        except BaseException:
            self._sqlite.execute("ROLLBACK")
            raise
        self._sqlite.execute("COMMIT")

    def analyze(self) -> None:
        """After a bulk load: PostgreSQL plans by statistics that autovacuum would otherwise
        gather in the middle of the measured run. SQLite's planner needs none."""
        if self._pg is not None:
            self._pg.execute("ANALYZE")

    def backend_pid(self) -> int | None:
        """The PostgreSQL server process serving this connection; None on SQLite."""
        return None if self._pg is None else int(self._pg.info.backend_pid)

    def server_version(self) -> str | None:
        return None if self._pg is None else str(self.one("SHOW server_version")[0])


def unix_seconds(value: object) -> float:
    """A stored time as unix seconds: PostgreSQL's timestamptz, SQLite's ISO-8601 text or
    its REAL unix seconds."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    assert isinstance(value, int | float)
    return float(value)
