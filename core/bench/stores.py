"""Where the bench's routers keep their stores: a temporary SQLite file, or, with
``--store``, a schema of their own in that PostgreSQL database, made for one router run and
dropped after it (on failure too), so that the bench never touches the database's tables.

A database URL may hold a password: nothing here prints one.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from arrears_router.bench.report import progress

__all__ = ["POSTGRESQL", "SQLITE", "StoreKind", "with_search_path"]

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
SCHEMA_PREFIX = "arrears_router_bench"

_schemas = itertools.count(1)


@dataclass(frozen=True)
class StoreKind:
    name: str
    """``sqlite`` or ``postgresql``: the name of the store's rows in the report."""
    url: str | None = field(default=None, repr=False)
    """PostgreSQL: the database the bench makes its schemas in (``--store``)."""

    @contextlib.contextmanager
    def new_store(self, folder: Path) -> Iterator[str]:
        """The URL of a new, empty store for one router run; gone after it."""
        if self.url is None:
            yield f"sqlite:///{folder / 'bench.db'}"  # the folder goes with the workspace
            return
        with _schema(self.url) as url:
            yield url


@contextlib.contextmanager
def _schema(url: str) -> Iterator[str]:
    import psycopg
    from psycopg import sql

    from arrears_router.store.postgres_schema import connect, describe_error

    name = f"{SCHEMA_PREFIX}_{os.getpid()}_{next(_schemas)}"
    schema = sql.Identifier(name)
    try:
        with connect(url, autocommit=True) as db:
            db.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    except psycopg.Error as exc:
        raise SystemExit(f"bench: cannot make the schema {name} in the --store database:"
                         f" {describe_error(exc)}") from None
    try:
        yield with_search_path(url, name)
    finally:
        try:
            with connect(url, autocommit=True) as db:
                db.execute("SET lock_timeout = '10s'; SET statement_timeout = 0")
                db.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
        except psycopg.Error as exc:
            progress(f"could not drop the schema {name}: {describe_error(exc)};"
                     f" drop it with DROP SCHEMA {name} CASCADE")


def with_search_path(url: str, schema: str) -> str:
    """``url`` with ``schema`` as its sessions' search_path, added to the libpq ``options``
    it may already give."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join([*(value for key, value in query if key == "options"),
                        f"-csearch_path={schema}"])
    query = [(key, value) for key, value in query if key != "options"] + [("options", options)]
    return parts._replace(
        query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)).geturl()
