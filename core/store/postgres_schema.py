"""The PostgreSQL store's schema and connections: versioned migrations applied under an
advisory lock, so that routers started at the same moment never race.

Plugins keeping tables in the same database reach the same code through
:mod:`arrears_router.postgres`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from arrears_router.store import SchemaError

__all__ = [
    "MIGRATIONS",
    "ROUTER",
    "check_url",
    "connect",
    "connection_options",
    "describe_error",
    "found_version",
    "migrate",
    "schema_version",
    "set_up_session",
]

ROUTER = "arrears_router"
"""The router's own name in ``schema_versions``; each plugin's tables have their own."""

# Each entry upgrades the schema by one version; never edit one that has shipped. Version 1
# is the SQLite schema as it stands at its version 7, in PostgreSQL's types: times are
# timestamptz on the database's clock, so leases mean the same on every machine.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE events (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        appid text NOT NULL,
        mch_id text NOT NULL,
        transaction_id text NOT NULL,
        digest bytea NOT NULL,
        received_at timestamptz NOT NULL,
        payment bytea NOT NULL,
        envelope bytea NOT NULL,
        UNIQUE (transaction_id, mch_id)
    );
    CREATE TABLE quarantine (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        errcode integer NOT NULL,
        reason text NOT NULL,
        appid text NOT NULL,
        mch_id text NOT NULL,
        transaction_id text NOT NULL,
        first_seen_at timestamptz NOT NULL,
        last_seen_at timestamptz NOT NULL,
        hits bigint NOT NULL DEFAULT 1,
        content_sha256 bytea NOT NULL UNIQUE,
        body bytea NOT NULL
    );
    CREATE INDEX quarantine_recent ON quarantine (appid, mch_id, first_seen_at);
    CREATE TABLE quarantine_overflow (
        appid text NOT NULL,
        mch_id text NOT NULL,
        errcode integer NOT NULL,
        bound text NOT NULL,
        count bigint NOT NULL,
        first_at timestamptz NOT NULL,
        last_at timestamptz NOT NULL,
        PRIMARY KEY (appid, mch_id, errcode, bound)
    );
    CREATE TABLE plugins (
        name text PRIMARY KEY,
        mode text NOT NULL,
        config_mode text,
        configured boolean NOT NULL
    );
    CREATE TABLE plugin_after (
        plugin text NOT NULL,
        after text NOT NULL,
        PRIMARY KEY (plugin, after)
    );
    CREATE TABLE mode_changes (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        plugin text NOT NULL,
        from_mode text,
        to_mode text NOT NULL,
        actor text NOT NULL,
        at timestamptz NOT NULL
    );
    CREATE TABLE deliveries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id bigint NOT NULL REFERENCES events (id),
        plugin text NOT NULL,
        status text NOT NULL DEFAULT 'pending',
        attempt integer NOT NULL DEFAULT 0,
        next_at timestamptz NOT NULL,
        lease_until timestamptz,
        token text,
        last_error text NOT NULL DEFAULT '',
        last_traceback text NOT NULL DEFAULT '',
        note text NOT NULL DEFAULT '',
        replays integer NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        UNIQUE (event_id, plugin)
    );
    -- Claims walk a plugin's pending deliveries oldest first and stop at their limit; only
    -- the few dead ones are indexed besides (replays), never the done majority.
    CREATE INDEX deliveries_pending ON deliveries (plugin, id) WHERE status = 'pending';
    CREATE INDEX deliveries_dead ON deliveries (plugin, created_at) WHERE status = 'dead';
    -- A queue: every delivery is claimed and finished, each an update. Room on each page
    -- lets a claim (which changes no indexed column) stay on its page, adding no index
    -- entries; autovacuum is asked to visit after 2% of the rows changed, not the default
    -- 20%, since claims walk past the dead versions until it does.
    ALTER TABLE deliveries SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
                                autovacuum_analyze_scale_factor = 0.02);
    CREATE TABLE heartbeat (
        id integer PRIMARY KEY CHECK (id = 1),
        at timestamptz NOT NULL
    );
    CREATE TABLE effects (
        idempotency_key text PRIMARY KEY,
        begun_at timestamptz NOT NULL,
        done_at timestamptz
    );
    -- Deliveries done, ever, by plugin: `plugins list` reads these, never the deliveries.
    -- Each writer adds to a shard of its own, so finishers in many processes do not queue on
    -- one row; a plugin's count is the sum of its shards.
    CREATE TABLE plugin_done (
        plugin text NOT NULL,
        shard integer NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (plugin, shard)
    );
    """,
    # As SQLite's: a delivery's latest attempts, a row per attempt number modulo
    # store.ATTEMPTS_KEPT, overwritten in turn; payments found by rider, repayment number
    # and arrival time, each on an index. The backfill reads every payment kept: the
    # session's 4 s bound on a statement would stop it on a large store.
    """
    CREATE TABLE delivery_attempts (
        delivery_id bigint NOT NULL,
        slot integer NOT NULL,
        attempt integer NOT NULL,
        at timestamptz NOT NULL,
        status text NOT NULL,
        error text NOT NULL,
        duration_s float8 NOT NULL,
        PRIMARY KEY (delivery_id, slot)
    );
    SET LOCAL statement_timeout = 0;
    ALTER TABLE events ADD COLUMN out_user_id text NOT NULL DEFAULT '',
                       ADD COLUMN repay_no text NOT NULL DEFAULT '';
    UPDATE events
    SET out_user_id = coalesce(convert_from(payment, 'UTF8')::json ->> 'out_user_id', ''),
        repay_no = coalesce(convert_from(payment, 'UTF8')::json ->> 'repay_no', '');
    -- Ids in the index: a page is read newest first, below its cursor, in index order. A
    -- payment that names no rider (no out_user_id) is left out.
    CREATE INDEX events_by_rider ON events (out_user_id, id) WHERE out_user_id <> '';
    CREATE INDEX events_by_repay_no ON events (repay_no, id);
    CREATE INDEX events_received ON events (received_at);
    """,
    # As SQLite's: one audit log for every change, the mode changes moved into it with their
    # ids (its identity then goes on from theirs), mode_changes a view of it; replay plans
    # and the ids they hold; what re-ingesting a quarantined request answered.
    """
    CREATE TABLE audit (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        target text NOT NULL,
        detail text NOT NULL
    );
    INSERT INTO audit (id, at, actor, action, target, detail) OVERRIDING SYSTEM VALUE
    SELECT id, at, actor, 'mode', plugin, coalesce(from_mode, '-') || ' -> ' || to_mode
    FROM mode_changes;
    SELECT setval(pg_get_serial_sequence('audit', 'id'), coalesce(max(id), 0) + 1, false)
    FROM audit;
    DROP TABLE mode_changes;
    CREATE VIEW mode_changes (id, plugin, from_mode, to_mode, actor, at) AS
    SELECT id, target, nullif(split_part(detail, ' -> ', 1), '-'),
           split_part(detail, ' -> ', 2), actor, at
    FROM audit WHERE action = 'mode';
    CREATE INDEX audit_by_action ON audit (action, id);
    CREATE TABLE replay_plans (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        created_at timestamptz NOT NULL,
        actor text NOT NULL,
        plugin text,
        since timestamptz,
        until timestamptz,
        count integer NOT NULL,
        ran_at timestamptz,
        ran_by text,
        replayed integer
    );
    CREATE TABLE replay_plan_items (
        plan_id bigint NOT NULL REFERENCES replay_plans (id),
        delivery_id bigint NOT NULL,
        PRIMARY KEY (plan_id, delivery_id)
    );
    ALTER TABLE quarantine ADD COLUMN reingested_at timestamptz,
                           ADD COLUMN reingest_errcode integer,
                           ADD COLUMN reingest_reason text,
                           ADD COLUMN reingested_by text;
    """,
)

# Seconds. A connection attempt to a host that does not answer ends well inside WeChat's
# 5 s; so does a statement waiting on a lock, or on a peer gone silent (tcp_user_timeout).
CONNECT_TIMEOUT = 2
_SESSION = (
    "SET TimeZone = 'UTC'; SET synchronous_commit = on; SET lock_timeout = '2s';"
    " SET statement_timeout = '4s'; SET idle_in_transaction_session_timeout = '10s'"
)
_DEFAULTS = {
    "connect_timeout": str(CONNECT_TIMEOUT),
    "tcp_user_timeout": "3000",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "2",
    "application_name": "arrears-router",
}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def check_url(url: str) -> None:
    """Raise ValueError unless libpq can read ``url``; the message never repeats the URL,
    which may hold a password."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        # libpq's message quotes no part of the URL for the errors it reports here.
        raise ValueError(f"not a valid PostgreSQL URL: {exc}") from None


def connection_options(url: str) -> dict[str, Any]:
    """What a router's connection adds to ``url``: bounded waits, its name in
    ``pg_stat_activity``. Options given in ``url`` (``sslmode``, ``connect_timeout``...) win."""
    given = conninfo_to_dict(url)
    return {key: value for key, value in _DEFAULTS.items() if key not in given}


def set_up_session(connection: psycopg.Connection[Any], *, readonly: bool = False) -> None:
    """UTC, synchronous_commit on, bounded waits; every transaction read-only if
    ``readonly`` (for inspecting a live store). Run in autocommit mode."""
    connection.execute(_SESSION)
    if readonly:
        connection.execute("SET default_transaction_read_only = on")


def connect(url: str, *, autocommit: bool = False, readonly: bool = False
            ) -> psycopg.Connection[Any]:
    """A connection made as the router's own (:func:`set_up_session`)."""
    connection = psycopg.connect(url, autocommit=True, **connection_options(url))
    try:
        set_up_session(connection, readonly=readonly)
        connection.autocommit = autocommit
    except BaseException:
        connection.close()
        raise
    return connection


def describe_error(exc: BaseException) -> str:
    """A driver error's first line: libpq's messages run on with hints and context."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def found_version(url: str) -> int:
    """The router's schema version in the store at ``url``, read in a read-only session."""
    from arrears_router.store import StoreError

    try:
        with connect(url, autocommit=True, readonly=True) as db:
            return schema_version(db)
    except psycopg.Error as exc:
        raise StoreError(f"cannot read the PostgreSQL store: {describe_error(exc)}") from exc


def _lock_key(name: str) -> str:
    return f"arrears-router migrate {name}"


def schema_version(connection: psycopg.Connection[Any], name: str = ROUTER) -> int:
    """How many of ``name``'s migrations the database (its current schema) has: 0 before
    the first."""
    row = connection.execute(
        "SELECT to_regclass('schema_versions') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = connection.execute(
        "SELECT version FROM schema_versions WHERE name = %s", (name,)).fetchone()
    return int(found[0]) if found else 0


def migrate(connection: psycopg.Connection[Any], name: str = ROUTER,
            migrations: Sequence[str] = MIGRATIONS) -> None:
    """Apply ``name``'s migrations not yet applied, all in one transaction, under an
    advisory lock of the current schema: of routers starting at once, one migrates and the
    others find it done.

    :raises SchemaError: the tables are newer than ``migrations``: the start must stop.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a schema name: lower-case letters, digits, _")
    with connection.transaction():  # ended before the lock's transaction begins
        found = schema_version(connection, name)
    if found == len(migrations):
        return  # the usual case: no lock taken
    if found > len(migrations):
        raise SchemaError(name, found, len(migrations))
    with connection.transaction():
        connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || %s, 0))",
            (_lock_key(name),))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions"
            " (name text PRIMARY KEY, version integer NOT NULL)")
        applied = schema_version(connection, name)  # again, under the lock
        if applied > len(migrations):
            raise SchemaError(name, applied, len(migrations))
        for script in migrations[applied:]:
            connection.execute(script.encode())  # no parameters: several statements at once
        connection.execute(
            "INSERT INTO schema_versions (name, version) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            (name, len(migrations)))

