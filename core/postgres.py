"""For plugins that keep tables of their own in the router's PostgreSQL store: which store a
``store_url`` names, a connection made as the router makes its own, and versioned migrations
applied as the router applies its own (one transaction, under an advisory lock).

A plugin names its tables ``NAME_*``; their version is the row ``NAME`` of the store's
``schema_versions``, beside the router's own::

    MIGRATIONS = ("CREATE TABLE receipts_sent (transaction_id text PRIMARY KEY)",)

    @hookimpl
    def router_started(self, store_url: str) -> None:
        if is_postgres(store_url):
            self.db = connect(store_url, lock_timeout=5.0)
            migrate(self.db, "receipts", MIGRATIONS)

The driver (psycopg) is the ``arrears-router[postgresql]`` extra: this module imports without
it, so that a plugin can ask :func:`is_postgres` on any installation.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from arrears_router.config import ConfigError
from arrears_router.store import SchemaError, is_postgres_url

if TYPE_CHECKING:
    from types import ModuleType

    import psycopg

__all__ = [
    "SchemaError",
    "connect",
    "describe_error",
    "is_postgres",
    "migrate",
    "qmark",
    "schema_version",
]


def is_postgres(store_url: str) -> bool:
    """Whether ``store_url`` (as the hooks are given it) names a PostgreSQL store."""
    return is_postgres_url(store_url)


def connect(store_url: str, *, readonly: bool = False, lock_timeout: float = 2.0,
            statement_timeout: float = 4.0) -> psycopg.Connection[Any]:
    """A connection to the store made as the router makes its own: autocommit (transactions
    are explicit, ``with connection.transaction():``), times in UTC, ``synchronous_commit``
    on, bounded waits; ``readonly`` makes every transaction read-only (for commands that
    read beside a running router).

    :param lock_timeout: seconds a statement waits for a lock (a row, an advisory lock).
    :param statement_timeout: seconds a statement may take, its lock wait included.
    :raises ConfigError: the store is not PostgreSQL, or the driver is not installed; the
        message names the URL's scheme at most, never the URL, which may hold a password.
    :raises psycopg.Error: the database cannot be reached.
    """
    if not is_postgres(store_url):
        scheme = store_url.partition(":")[0] if ":" in store_url else "no scheme"
        raise ConfigError(f"store.url: not a PostgreSQL store (scheme {scheme!r})")
    connection: psycopg.Connection[Any] = _schema().connect(
        store_url, autocommit=True, readonly=readonly)
    try:
        # set_config, not SET: a value can be a parameter only there.
        connection.execute("SELECT set_config('lock_timeout', %s, false),"
                           " set_config('statement_timeout', %s, false)",
                           (_ms(lock_timeout), _ms(statement_timeout)))
    except BaseException:
        connection.close()
        raise
    return connection


def schema_version(connection: psycopg.Connection[Any], name: str) -> int:
    """How many of ``name``'s migrations the store has: 0 before the first."""
    return int(_schema().schema_version(connection, name))


def migrate(connection: psycopg.Connection[Any], name: str, migrations: Sequence[str]) -> None:
    """Bring ``name``'s tables up to date: apply, in one transaction, each of ``migrations``
    (scripts of ``;``-separated statements) not applied yet. Append to ``migrations``; never
    edit one that has shipped. Safe when several processes start at once.

    :param name: lower-case letters, digits and ``_``; prefixes the plugin's tables.
    :raises SchemaError: the tables are newer than ``migrations``: the start must stop.
    """
    _schema().migrate(connection, name, migrations)


@cache
def qmark(query: str) -> str:
    """``query``, written with SQLite's ``?`` placeholders, with psycopg's ``%s``: for SQL
    that both stores run. It must hold no other ``?`` and no literal ``%``."""
    return query.replace("?", "%s")


def describe_error(exc: BaseException) -> str:
    """A driver error as a message may tell it: its first line (libpq's run on with hints
    and context), which names a host at most, never a password."""
    return str(_schema().describe_error(exc))


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def _schema() -> ModuleType:
    try:
        from arrears_router.store import postgres_schema
    except ImportError:
        raise ConfigError("store.url: a postgresql:// store needs the PostgreSQL driver:"
                          " install arrears-router[postgresql]") from None
    return postgres_schema
