"""The SQLite store's schema and connections: versioned migrations, WAL, synchronous=FULL."""

from __future__ import annotations

import sqlite3
from urllib.parse import quote

__all__ = ["BUSY_TIMEOUT_MS", "MIGRATIONS", "connect", "migrate", "schema_version"]

# Each entry upgrades the schema by one version; never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        appid TEXT NOT NULL,
        mch_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        digest BLOB NOT NULL,
        received_at TEXT NOT NULL,
        payment BLOB NOT NULL,
        envelope BLOB NOT NULL,
        UNIQUE (transaction_id, mch_id)
    );
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        errcode INTEGER NOT NULL,
        reason TEXT NOT NULL,
        appid TEXT NOT NULL,
        mch_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 1,
        body_sha256 BLOB NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    """,
    # Deliveries schedule with unix seconds (REAL): compared on every claim, never shown raw.
    """
    CREATE TABLE plugins (
        name TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        config_mode TEXT,
        configured INTEGER NOT NULL
    );
    CREATE TABLE plugin_after (
        plugin TEXT NOT NULL,
        after TEXT NOT NULL,
        PRIMARY KEY (plugin, after)
    );
    CREATE TABLE mode_changes (
        id INTEGER PRIMARY KEY,
        plugin TEXT NOT NULL,
        from_mode TEXT,
        to_mode TEXT NOT NULL,
        actor TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        event_id INTEGER NOT NULL REFERENCES events (id),
        plugin TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempt INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        lease_until REAL,
        token TEXT,
        last_error TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        replays INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (event_id, plugin)
    );
    -- Claims walk a plugin's pending deliveries oldest first and stop at their limit, so the
    -- cost of a claim does not grow with the backlog.
    CREATE INDEX deliveries_pending ON deliveries (plugin, id) WHERE status = 'pending';
    CREATE INDEX deliveries_by_status ON deliveries (status, plugin, created_at);
    """,
    # Nearly every delivery ends done, and each paid for an entry in deliveries_by_status on
    # insert and again on finish, for queries that want the few dead ones (replays) or counts
    # (plugins list, which scans). Only the dead are indexed now.
    """
    DROP INDEX deliveries_by_status;
    CREATE INDEX deliveries_dead ON deliveries (plugin, created_at) WHERE status = 'dead';
    """,
)

# Long enough for another process's short write; short enough to answer WeChat in time.
BUSY_TIMEOUT_MS = 2000


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    connection = sqlite3.connect(
        f"file:{quote(path)}?mode=ro" if readonly else path, uri=readonly,
        isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False,
    )
    if not readonly:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    return connection


def schema_version(connection: sqlite3.Connection) -> int:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(connection: sqlite3.Connection) -> None:
    if schema_version(connection) == len(MIGRATIONS):
        return  # the usual case, and no write lock taken for it
    connection.execute("BEGIN IMMEDIATE")
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
