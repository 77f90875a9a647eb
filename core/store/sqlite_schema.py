"""The SQLite store's schema and connections: versioned migrations, WAL, synchronous=FULL.

Plugins keeping tables in the store reach the same code through :mod:`arrears_router.sqlite`.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import quote

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS",
    "PRIVATE_MODE",
    "SchemaVersion",
    "connect",
    "file_of",
    "file_version",
    "migrate",
    "schema_version",
]

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
    # Quarantine rows are one per request as its sign covers it (content_sha256), not per
    # body: padding a captured request made a row a copy. Rows kept before are keyed by their
    # body's digest, as they were deduplicated. Each merchant's recent rows are counted on
    # an index (the rate bound), and what the bounds refuse is counted per merchant.
    """
    CREATE TABLE quarantine_by_content (
        id INTEGER PRIMARY KEY,
        errcode INTEGER NOT NULL,
        reason TEXT NOT NULL,
        appid TEXT NOT NULL,
        mch_id TEXT NOT NULL,
        transaction_id TEXT NOT NULL,
        first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 1,
        content_sha256 BLOB NOT NULL UNIQUE,
        body BLOB NOT NULL
    );
    INSERT INTO quarantine_by_content
    SELECT id, errcode, reason, appid, mch_id, transaction_id, first_seen_at, last_seen_at,
           hits, body_sha256, body
    FROM quarantine;
    DROP TABLE quarantine;
    ALTER TABLE quarantine_by_content RENAME TO quarantine;
    CREATE INDEX quarantine_recent ON quarantine (appid, mch_id, first_seen_at);
    CREATE TABLE quarantine_overflow (
        appid TEXT NOT NULL,
        mch_id TEXT NOT NULL,
        errcode INTEGER NOT NULL,
        bound TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        PRIMARY KEY (appid, mch_id, errcode, bound)
    );
    """,
    # A readiness probe writes this one row: an empty transaction writes no page, so it
    # passes on a full disk that refuses every payment.
    """
    CREATE TABLE heartbeat (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        at TEXT NOT NULL
    );
    """,
    # A failed attempt keeps where it failed beside its error. An effect the far side cannot
    # dedupe (a text message) is recorded as begun, committed before it is made, and as done
    # after: a begun one never done is one whose outcome is unknown (a crash, a timeout).
    """
    ALTER TABLE deliveries ADD COLUMN last_traceback TEXT NOT NULL DEFAULT '';
    CREATE TABLE effects (
        idempotency_key TEXT PRIMARY KEY,
        begun_at TEXT NOT NULL,
        done_at TEXT
    );
    """,
    # Done deliveries are pruned once old, and counting them meant a scan of every delivery:
    # each plugin's are counted instead, in the transaction that makes one done (or, replayed,
    # pending again), from those done so far. Pruning leaves the count: done ever.
    """
    CREATE TABLE plugin_done (
        plugin TEXT PRIMARY KEY,
        count INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO plugin_done (plugin, count)
    SELECT plugin, count(*) FROM deliveries WHERE status = 'done' GROUP BY plugin;
    """,
    # A delivery keeps its latest attempts (store.ATTEMPTS_KEPT), a row per attempt number
    # modulo that, overwritten in turn: bounded with no DELETE on the path that records
    # outcomes. Payments are found by rider and repayment number, copied out of the stored
    # payment into columns of their own, and by arrival time, each on an index.
    """
    CREATE TABLE delivery_attempts (
        delivery_id INTEGER NOT NULL,
        slot INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        at REAL NOT NULL,
        status TEXT NOT NULL,
        error TEXT NOT NULL,
        duration_s REAL NOT NULL,
        PRIMARY KEY (delivery_id, slot)
    ) WITHOUT ROWID;
    ALTER TABLE events ADD COLUMN out_user_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE events ADD COLUMN repay_no TEXT NOT NULL DEFAULT '';
    UPDATE events
    SET out_user_id = coalesce(CAST(payment AS TEXT) ->> '$.out_user_id', ''),
        repay_no = coalesce(CAST(payment AS TEXT) ->> '$.repay_no', '');
    -- A payment that names no rider (no out_user_id) is left out.
    CREATE INDEX events_by_rider ON events (out_user_id) WHERE out_user_id != '';
    CREATE INDEX events_by_repay_no ON events (repay_no);
    CREATE INDEX events_received ON events (received_at);
    """,
    # One audit log for every change, not only modes: the mode changes move into it, their
    # ids kept, and mode_changes stays readable as a view of it. A bulk replay is planned
    # (the ids it will replay, kept) and then run once. A quarantined request records what
    # running its body through the intake again answered.
    """
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    INSERT INTO audit (id, at, actor, action, target, detail)
    SELECT id, at, actor, 'mode', plugin, coalesce(from_mode, '-') || ' -> ' || to_mode
    FROM mode_changes;
    DROP TABLE mode_changes;
    CREATE VIEW mode_changes (id, plugin, from_mode, to_mode, actor, at) AS
    SELECT id, target, nullif(substr(detail, 1, instr(detail, ' -> ') - 1), '-'),
           substr(detail, instr(detail, ' -> ') + 4), actor, at
    FROM audit WHERE action = 'mode';
    CREATE INDEX audit_by_action ON audit (action, id);
    CREATE TABLE replay_plans (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        actor TEXT NOT NULL,
        plugin TEXT,
        since TEXT,
        until TEXT,
        count INTEGER NOT NULL,
        ran_at TEXT,
        ran_by TEXT,
        replayed INTEGER
    );
    CREATE TABLE replay_plan_items (
        plan_id INTEGER NOT NULL REFERENCES replay_plans (id),
        delivery_id INTEGER NOT NULL,
        PRIMARY KEY (plan_id, delivery_id)
    ) WITHOUT ROWID;
    ALTER TABLE quarantine ADD COLUMN reingested_at TEXT;
    ALTER TABLE quarantine ADD COLUMN reingest_errcode INTEGER;
    ALTER TABLE quarantine ADD COLUMN reingest_reason TEXT;
    ALTER TABLE quarantine ADD COLUMN reingested_by TEXT;
    """,
)

PRIVATE_MODE = 0o600
"""The store holds riders' payments (openids, amounts): its owner alone reads it. SQLite
gives its -wal and -shm files the database file's own mode."""

# Long enough for another process's short write; short enough to answer WeChat in time.
BUSY_TIMEOUT_MS = 2000


def file_of(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` store URL; None for any other store."""
    scheme, sep, path = url.partition(":///")
    if scheme == "sqlite" and sep and path:
        return path if path.startswith("/") else f"./{path}"
    return None


def connect(
    path: str, *, readonly: bool = False, busy_timeout: float = BUSY_TIMEOUT_MS / 1000
) -> sqlite3.Connection:
    """A connection to the store at ``path`` in autocommit mode (transactions are explicit);
    a writer's in WAL with synchronous=FULL, so a write is on disk once COMMIT returns.

    The file is created with :data:`PRIVATE_MODE`, and one made readable by an older
    version is made private before this connection writes.

    :param readonly: ``mode=ro``: never writes, never takes the write lock.
    :param busy_timeout: seconds to wait for another connection's write lock.
    """
    if not readonly:
        _make_private(path)
    connection = sqlite3.connect(
        f"file:{quote(path)}?mode=ro" if readonly else path, uri=readonly,
        isolation_level=None, timeout=busy_timeout, check_same_thread=False,
    )
    if not readonly:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    return connection


def _make_private(path: str) -> None:
    """Create the database file empty (which SQLite takes as a new database) with
    :data:`PRIVATE_MODE`, so it never holds a byte while others may read it; narrow the
    mode of the files an older version left readable."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    except FileExistsError:
        for name in (path, f"{path}-wal", f"{path}-shm"):
            # Another user's file is theirs to set; SQLite makes a -wal or -shm with the
            # database's own mode.
            with contextlib.suppress(FileNotFoundError, PermissionError):
                if os.stat(name).st_mode & 0o777 != PRIVATE_MODE:
                    os.chmod(name, PRIVATE_MODE)
    except OSError as exc:  # as sqlite3.connect would have failed: callers expect its error
        raise sqlite3.OperationalError(f"unable to open database file: {exc}") from exc


def schema_version(connection: sqlite3.Connection) -> int:
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    return int(version)


def file_version(path: str) -> int:
    """The schema version of the store file at ``path``, read-only: 0 if there is none."""
    from arrears_router.store import StoreError

    if not os.path.exists(path):
        return 0
    try:
        with contextlib.closing(connect(path, readonly=True)) as db:
            return schema_version(db)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the SQLite store {path}: {exc}") from exc


class SchemaVersion(Protocol):
    """Where a schema's version is kept: the number of its migrations applied."""

    def read(self, connection: sqlite3.Connection) -> int: ...

    def write(self, connection: sqlite3.Connection, version: int) -> None: ...


class _UserVersion:
    """The router's own schema's: ``PRAGMA user_version``, which no plugin may use."""

    def read(self, connection: sqlite3.Connection) -> int:
        return schema_version(connection)

    def write(self, connection: sqlite3.Connection, version: int) -> None:
        connection.execute(f"PRAGMA user_version = {version}")


_USER_VERSION: SchemaVersion = _UserVersion()


def migrate(
    connection: sqlite3.Connection, migrations: Sequence[str] = MIGRATIONS,
    version: SchemaVersion = _USER_VERSION,
) -> None:
    """Apply the ``migrations`` not yet applied, each a script of ``;``-separated statements,
    all in one transaction: the router's schema by default, a plugin's tables with their own
    ``version`` (see :mod:`arrears_router.sqlite`).
    """
    if version.read(connection) == len(migrations):
        return  # the usual case, and no write lock taken for it
    connection.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the lock: another process may have migrated in between.
        applied = version.read(connection)
        for number, script in enumerate(migrations[applied:], start=applied + 1):
            for statement in filter(str.strip, script.split(";")):
                connection.execute(statement)
            version.write(connection, number)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
