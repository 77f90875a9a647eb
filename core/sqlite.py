"""For plugins that keep tables of their own in the router's SQLite store: where the store is,
a connection made as the router makes its own, and versioned migrations applied by the code
that migrates the router's schema.

A plugin names its tables ``NAME_*`` and keeps their version in ``NAME_schema``; the store's
``PRAGMA user_version`` is the router's alone::

    MIGRATIONS = ("CREATE TABLE receipts_sent (transaction_id TEXT PRIMARY KEY)",)

    @hookimpl
    def router_started(self, store_url: str) -> None:
        self.db = connect(store_path(store_url, "receipts"), busy_timeout=5.0)
        migrate(self.db, "receipts", MIGRATIONS)
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

from arrears_router.config import ConfigError
from arrears_router.store import SchemaError, sqlite_schema
from arrears_router.store.sqlite_schema import connect

__all__ = ["SchemaError", "connect", "migrate", "schema_version", "store_path"]

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def store_path(store_url: str, plugin: str) -> str:
    """The store's file, from the ``store_url`` the hooks are given.

    :raises ConfigError: the store is not SQLite. It names ``plugin`` and the URL's scheme,
        never the URL, which may hold a password.
    """
    path = sqlite_schema.file_of(store_url)
    if path is None:
        given = store_url.partition(":")[0] if ":" in store_url else "no scheme"
        raise ConfigError(
            f"store.url: plugin {plugin} keeps its tables in the router's store and supports"
            f" only sqlite:///PATH for now; this url has {given!r}"
        )
    return path


def schema_version(connection: sqlite3.Connection, name: str) -> int:
    """How many of ``name``'s migrations the store has: 0 before the first."""
    return _TableVersion(name).read(connection)


def migrate(connection: sqlite3.Connection, name: str, migrations: Sequence[str]) -> None:
    """Bring ``name``'s tables up to date: apply, in one transaction, each of ``migrations``
    (scripts of ``;``-separated statements) not applied yet. Append to ``migrations``; never
    edit one that has shipped. Safe when several processes start at once.

    :param name: lower-case letters, digits and ``_``; prefixes the plugin's tables.
    :raises SchemaError: the tables are newer than ``migrations``: the start must stop.
    """
    version = _TableVersion(name)
    found = version.read(connection)
    if found > len(migrations):
        raise SchemaError(name, found, len(migrations))
    sqlite_schema.migrate(connection, migrations, version)


class _TableVersion:
    """A plugin's version, in its one-row table ``NAME_schema``."""

    def __init__(self, name: str) -> None:
        # The name goes into SQL text (a table's name cannot be a parameter): checked here.
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a table prefix: lower-case letters, digits, _")
        self._table = f"{name}_schema"

    def read(self, connection: sqlite3.Connection) -> int:
        exists = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self._table,)
        ).fetchone()
        if exists is None:
            return 0
        select = f"SELECT version FROM {self._table} WHERE id = 1"  # noqa: S608
        row = connection.execute(select).fetchone()
        return int(row[0]) if row else 0

    def write(self, connection: sqlite3.Connection, version: int) -> None:
        table = self._table
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table} ("
                           " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)")
        connection.execute(
            f"INSERT INTO {table} (id, version) VALUES (1, ?)"  # noqa: S608
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version", (version,),
        )
