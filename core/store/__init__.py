"""Durable storage of payments, their per-plugin deliveries, quarantine and plugin modes.

Backends implement :class:`Store`; nothing outside a backend's module knows its SQL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol

import msgspec

from arrears_router.delivery import EffectRecord
from arrears_router.payment import ArrearsPayment
from arrears_router.store.sqlite_schema import file_of

_encode = msgspec.json.encode

__all__ = [
    "ATTEMPTS_KEPT",
    "REPLAY_PLAN_MAX",
    "Accepted",
    "AttemptRecord",
    "AuditAction",
    "AuditEntry",
    "ClaimLimit",
    "ClaimedDelivery",
    "DeliveryRecord",
    "DeliveryResult",
    "DeliveryStatus",
    "EventRecord",
    "Mode",
    "ModeChange",
    "NewEvent",
    "NoSuchPlan",
    "NoSuchQuarantine",
    "PlanAlreadyRun",
    "PlanTooLarge",
    "PluginRoute",
    "PluginState",
    "Pruned",
    "QuarantineBound",
    "QuarantineBounds",
    "QuarantineEntry",
    "QuarantineOverflow",
    "QuarantineRecord",
    "QuarantineStats",
    "Quarantined",
    "ReplayPlan",
    "SchemaError",
    "SchemaStatus",
    "Store",
    "StoreError",
    "check_store_url",
    "is_postgres_url",
    "mode_detail",
    "open_store",
    "replay_filter",
    "schema_status",
    "shown_store_url",
]


class StoreError(Exception):
    """The store could not do what was asked (unreachable, locked, disk full...)."""


class NoSuchPlan(StoreError, LookupError):
    """No replay plan has this id."""

    def __init__(self, plan_id: int) -> None:
        super().__init__(f"no replay plan {plan_id}")
        self.plan_id = plan_id


class NoSuchQuarantine(StoreError, LookupError):
    """No quarantined request is kept with this id (never, or pruned since)."""

    def __init__(self, quarantine_id: int) -> None:
        super().__init__(f"no quarantined request {quarantine_id}")
        self.quarantine_id = quarantine_id


class PlanTooLarge(StoreError, ValueError):
    """More dead deliveries match a replay plan's filter than a plan may hold."""


class PlanAlreadyRun(StoreError):
    """A replay plan runs once: this one has run."""

    def __init__(self, plan: ReplayPlan) -> None:
        ran_at = plan.ran_at.isoformat() if plan.ran_at else "?"
        super().__init__(f"replay plan {plan.id} already ran at {ran_at} by {plan.ran_by}")
        self.plan = plan


class SchemaError(Exception):
    """Tables are of a newer version than the migrations given: newer code made them, and
    this code must not run on them."""

    def __init__(self, name: str, version: int, known: int) -> None:
        super().__init__(f"the {name} tables are version {version}; this code knows up to"
                         f" {known}: upgrade it")
        self.name = name
        self.version = version
        self.known = known


class Accepted(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    """The same payment is already stored; nothing new was written."""
    CONFLICT = "conflict"
    """Another payment with this transaction_id is stored; this one went to quarantine."""


class Mode(StrEnum):
    """A plugin's mode. It lives in the store, so every router and worker obeys a change."""

    ENABLED = "enabled"
    """Deliveries are created and run."""
    PAUSED = "paused"
    """Deliveries are created and held; enabling again releases them in order."""
    DISABLED = "disabled"
    """No deliveries are created; those already made are held."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """Waiting for its turn, its retry time, its plugin's mode or the plugins it runs after."""
    DONE = "done"
    DEAD = "dead"
    """Gave up; waits for a replay."""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    payment: ArrearsPayment
    payment_json: bytes
    """The payment as stored: encoded once, here, for both the digest and the row."""
    digest: bytes
    """Identifies the payment's content, so a retry is told apart from a conflict."""
    envelope: bytes
    """The request body as received: WeChat's signature over it stays checkable."""
    received_at: datetime

    @classmethod
    def of(cls, payment: ArrearsPayment, envelope: bytes, received_at: datetime) -> NewEvent:
        payment_json = _encode(payment)
        return cls(payment=payment, payment_json=payment_json,
                   digest=hashlib.sha256(payment_json).digest(), envelope=envelope,
                   received_at=received_at)


class QuarantineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """An authentic (signed) request that could not be accepted, kept with the reason."""

    errcode: int
    reason: str
    appid: str
    mch_id: str
    body: bytes
    received_at: datetime
    digest: bytes
    """What makes two requests one: the digest of the fields its sign covers (a conflict's:
    of its payment). Re-sent with other spacing or padding, a request is a hit, not a row."""
    transaction_id: str = ""
    """When the payload could be read that far."""


class Quarantined(StrEnum):
    """What became of a request sent to quarantine. It is refused with its errcode whatever
    this is, so WeChat sends it again: what is only counted is still owed."""

    KEPT = "kept"
    AGAIN = "again"
    """The same request is kept already: a hit is counted."""
    COUNTED = "counted"
    """A bound was reached: only counted, in :class:`QuarantineOverflow`, not kept."""


class QuarantineBound(StrEnum):
    RATE = "rate"
    """The merchant's new rows in the last minute."""
    SIZE = "size"
    """The bodies kept, in bytes, over every merchant."""


class QuarantineBounds(msgspec.Struct, frozen=True, kw_only=True):
    """How fast and how far the quarantine may grow. Only authentic requests reach it, but one
    captured request re-sent as fast as the network allows must not fill the disk."""

    new_per_minute: int = 60
    """New rows per merchant in any 60 s: a real incident (a wrong key) shows itself in far
    fewer; WeChat's retries of the rest find room later."""
    max_bytes: int = 64 * 1024 * 1024
    """Bodies kept, all merchants together: a thousand at the largest body, tens of
    thousands of usual ones."""


class EventRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    received_at: datetime
    payment: ArrearsPayment


class QuarantineRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    errcode: int
    reason: str
    appid: str
    mch_id: str
    transaction_id: str
    first_seen_at: datetime
    last_seen_at: datetime
    hits: int
    """How many times this request arrived (WeChat retries what it is refused), however
    its JSON was spaced."""
    body: bytes
    """The first copy, as received."""
    reingested_at: datetime | None = None
    """When its body was last run through the intake again (:meth:`Store.record_reingest`)."""
    reingest_errcode: int | None = None
    """What that run answered: 0 when the payment is stored now."""
    reingest_reason: str = ""
    reingested_by: str = ""


class QuarantineOverflow(msgspec.Struct, frozen=True, kw_only=True):
    """Requests only counted, not kept: one counter per merchant, errcode and bound."""

    appid: str
    mch_id: str
    errcode: int
    bound: QuarantineBound
    count: int
    first_at: datetime
    last_at: datetime


class QuarantineStats(msgspec.Struct, frozen=True, kw_only=True):
    rows: int
    bytes: int
    """Of the bodies kept."""
    hits: int
    """Arrivals of the requests kept, first ones included."""
    bounds: QuarantineBounds
    overflow: list[QuarantineOverflow]


class PluginRoute(msgspec.Struct, frozen=True):
    """What the config says of one plugin, as the store needs it to route deliveries."""

    name: str
    mode: Mode
    after: tuple[str, ...] = ()


class PluginState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    mode: Mode
    configured: bool
    pending: int
    done: int
    dead: int
    oldest_pending_at: datetime | None = None
    """When the plugin's oldest pending delivery was made (how far behind the plugin is);
    None when none is pending."""


class ModeChange(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    plugin: str
    from_mode: Mode | None
    to_mode: Mode
    actor: str
    at: datetime


class AuditAction(StrEnum):
    """What an entry of the audit log records: every change a person or the config makes."""

    MODE = "mode"
    """A plugin's mode changed: the target is the plugin, the detail :func:`mode_detail`."""
    REPLAY = "replay"
    """Deliveries made due again: the target is ``delivery=ID`` or :func:`replay_filter`,
    the detail how many."""
    REPLAY_PLAN = "replay_plan"
    """A bulk replay planned: the target is the plan's id, the detail its filter and size."""
    REPLAY_RUN = "replay_run"
    """A plan run: the target is the plan's id, the detail how many of it were replayed."""
    REINGEST = "reingest"
    """A quarantined request's body run through the intake again: the target is its id, the
    detail the errcode and reason it got."""


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    """Grows with every entry: the log's order, and its pages' bound."""
    at: datetime
    actor: str
    """Who: ``config`` for the config file, else whom the command or API call names."""
    action: AuditAction
    target: str
    detail: str


REPLAY_PLAN_MAX = 100_000
"""Deliveries one replay plan may hold: a filter matching more must be narrowed."""


class ReplayPlan(msgspec.Struct, frozen=True, kw_only=True):
    """A bulk replay in two steps: the dead deliveries a filter matched when the plan was
    made, and once it has run, how many of them were replayed."""

    id: int
    created_at: datetime
    actor: str
    plugin: str | None
    since: datetime | None
    until: datetime | None
    count: int
    """The deliveries it holds."""
    ran_at: datetime | None = None
    ran_by: str | None = None
    replayed: int | None = None
    """Those of them still dead when it ran: the others had been replayed meanwhile."""


class ClaimLimit(msgspec.Struct, frozen=True):
    """How many of one plugin's deliveries to claim, and for how long."""

    limit: int
    lease: float
    """Seconds: a delivery unfinished by then (its claimer crashed) is due again."""


class ClaimedDelivery(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    plugin: str
    attempt: int
    token: str
    """Proves this claim still holds when its result is recorded."""
    payment: ArrearsPayment


class DeliveryResult(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    token: str
    status: DeliveryStatus
    retry_in: float = 0.0
    """Seconds until the next attempt, for a PENDING result."""
    error: str = ""
    traceback: str = ""
    """Where the error came from; kept with it, and replaced with it."""
    note: str = ""
    duration_s: float = 0.0
    """The attempt's wall time in seconds, kept in its :class:`AttemptRecord`."""


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    event_id: int
    mch_id: str
    transaction_id: str
    plugin: str
    status: DeliveryStatus
    attempt: int
    next_at: datetime
    last_error: str
    """The latest failed attempt's error, while the delivery is pending or dead; once it is
    done, that error is :attr:`error_before_done` and this is empty."""
    note: str
    replays: int
    created_at: datetime
    updated_at: datetime
    last_traceback: str = ""
    """Where :attr:`last_error` came from: its exception's frames (a timeout's: where the
    call was when its time ran out)."""
    error_before_done: str = ""
    """For a done delivery: the error of the last attempt that failed before it was done, by
    retry or replay; not current."""
    traceback_before_done: str = ""
    """Where :attr:`error_before_done` came from."""


ATTEMPTS_KEPT = 10
"""The attempts a delivery keeps in its history (:meth:`Store.attempts`): its latest."""


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a delivery, as its outcome was recorded."""

    attempt: int
    """The delivery's attempt number (counted afresh after a replay)."""
    at: datetime
    """When its outcome was recorded, by the store's clock."""
    status: DeliveryStatus
    """What it left the delivery: done, pending (to be retried) or dead."""
    error: str
    """Its failure's error; empty when it was done."""
    duration_s: float
    """Its wall time, in seconds."""


class Pruned(msgspec.Struct, frozen=True, kw_only=True):
    """What one :meth:`Store.prune` deleted."""

    deliveries: int
    quarantine: int


class Store(Protocol):
    async def open(self) -> None:
        """Connect, and bring the schema up to date."""

    async def close(self) -> None:
        """Finish the writes in flight, then disconnect."""

    async def ping(self) -> None:
        """Raise StoreError, saying why, unless a write now would be kept where the store is
        found again after a restart: the check a readiness probe makes."""

    def on_work(self, wake: Callable[[], None]) -> None:
        """Call ``wake``, on the caller's event loop, when another process commits deliveries
        a dispatcher here may claim: sooner than its next poll, which remains the fallback."""

    async def accept(self, event: NewEvent) -> Accepted:
        """Store a payment once per (mch_id, transaction_id), durably, before returning,
        with one delivery per configured plugin whose mode is enabled or paused.

        A conflicting payment is quarantined in the same transaction. Raises StoreError when
        nothing could be committed.
        """

    async def accept_and_claim(
        self, event: NewEvent, leases: Mapping[str, float]
    ) -> tuple[Accepted, list[ClaimedDelivery]]:
        """:meth:`accept`, and if the payment is new, claim its deliveries to the plugins in
        ``leases`` (plugin name: seconds of lease) that are enabled and run after no other,
        in the same transaction: the caller starts them with no claim of their own.
        """

    async def quarantine(self, entry: QuarantineEntry) -> Quarantined:
        """Keep a refused authentic request durably; the same request again (its ``digest``)
        only counts a hit; past the store's :class:`QuarantineBounds` it is only counted."""

    async def events(self, *, limit: int = 50) -> list[EventRecord]:
        """The most recently stored payments first."""

    async def events_by_transaction(self, transaction_id: str) -> list[EventRecord]:
        """Every stored payment with this transaction_id (one per merchant at most)."""

    async def search_events(
        self, *, transaction_id: str | None = None, out_user_id: str | None = None,
        repay_no: str | None = None, since: datetime | None = None,
        until: datetime | None = None, before: int | None = None, limit: int = 50,
    ) -> list[EventRecord]:
        """Stored payments matching every filter given, newest (highest id) first, at most
        ``limit``: received in [since, until), and of ids below ``before`` (the last id of
        the previous page, for the next one). Each filter is served by an index, so a page
        costs the same however many payments are kept. An empty ``out_user_id`` (a payment
        that names no rider) matches nothing.
        """

    async def quarantined(
        self, *, limit: int = 50, before: int | None = None, errcode: int | None = None,
    ) -> list[QuarantineRecord]:
        """The most recently quarantined requests first, by id: those of ids below
        ``before`` (the next page: pass the last id of this one), of ``errcode`` if given."""

    async def quarantine_record(self, quarantine_id: int) -> QuarantineRecord | None: ...

    async def record_reingest(
        self, quarantine_id: int, *, errcode: int, reason: str, actor: str,
    ) -> QuarantineRecord:
        """Record on a quarantined request what running its body through the intake again
        answered (``errcode`` 0: the payment is stored now), replacing an earlier outcome;
        audited. Raises NoSuchQuarantine if no request with this id is kept."""

    async def quarantine_stats(self) -> QuarantineStats:
        """What the quarantine keeps, and what its bounds let it only count."""

    # -- plugins and their modes

    async def sync_plugins(self, routes: Sequence[PluginRoute]) -> None:
        """Make these the configured plugins. A mode the config changed is applied (and
        audited as ``config``); a mode set since by an operator otherwise stands.
        """

    async def set_mode(self, plugin: str, mode: Mode, actor: str) -> Mode:
        """Change a configured plugin's mode, audited; returns the mode it had."""

    async def plugin_states(self) -> list[PluginState]:
        """Every plugin the store knows, with its mode and deliveries by status: ``done``
        counts every delivery done ever, pruned or not, and is read from a counter, so this
        costs the same however long the store's history (a replayed one is pending again).
        Each plugin's oldest pending delivery is one lookup on the index of pending ones."""

    async def mode_changes(self, *, limit: int = 50) -> list[ModeChange]:
        """The audit log of mode changes, newest first."""

    async def audit(
        self, *, limit: int = 50, before: int | None = None, action: AuditAction | None = None,
    ) -> list[AuditEntry]:
        """The audit log, newest first: the entries of ids below ``before`` (the next page:
        pass the last id of this one), of ``action`` if given."""

    # -- deliveries

    async def claim(self, wants: Mapping[str, ClaimLimit]) -> list[ClaimedDelivery]:
        """For each plugin named, if it is enabled, take up to its limit of its due
        deliveries, oldest first, whose ``after`` plugins are done with the payment; all in
        one transaction. Each is leased: unfinished by then (a crash), it is due again.
        Counts an attempt. Deliveries of one payment share one payment object.
        """

    async def finish(self, results: Sequence[DeliveryResult]) -> list[bool]:
        """Record attempts' outcomes, in one transaction; for each, False if its claim had
        lapsed and another claimer took the delivery (its outcome is then not recorded).
        Each outcome recorded is kept in its delivery's history too (:meth:`attempts`).
        """

    async def attempts(self, delivery_id: int) -> list[AttemptRecord]:
        """The delivery's latest recorded attempts, at most :data:`ATTEMPTS_KEPT`, newest
        first; none for a delivery unknown or pruned."""

    async def deliveries(
        self, *, plugin: str | None = None, status: DeliveryStatus | None = None,
        since: datetime | None = None, until: datetime | None = None,
        before: int | None = None, limit: int = 50,
    ) -> list[DeliveryRecord]:
        """Deliveries matching every filter given, newest (highest id) first, at most
        ``limit``: made in [since, until), and of ids below ``before`` (the last id of the
        previous page, for the next one). A plugin's pending or dead ones are read on their
        indexes; other lists walk back from the newest and stop at ``limit``."""

    async def deliveries_by_transaction(self, transaction_id: str) -> list[DeliveryRecord]:
        """Every delivery of the payments with this transaction_id (one payment per merchant
        at most), oldest first: found through the payment, whatever else the store holds.
        """

    async def delivery(self, delivery_id: int) -> DeliveryRecord | None: ...

    async def replay(
        self, *, delivery_id: int | None = None, plugin: str | None = None,
        since: datetime | None = None, until: datetime | None = None, actor: str = "cli",
    ) -> int:
        """Make deliveries due again with a fresh count of attempts: one by id (dead or
        done), or every dead one of a plugin and/or created in [since, until). Returns how many.
        Audited as ``actor``'s, in the same transaction.
        """

    async def plan_replay(
        self, *, plugin: str | None = None, since: datetime | None = None,
        until: datetime | None = None, actor: str,
    ) -> ReplayPlan:
        """Plan a bulk replay: keep the ids of the dead deliveries of ``plugin`` and/or
        created in [since, until) now, for :meth:`run_replay_plan`; audited. Raises
        StoreError without a filter, or when more than :data:`REPLAY_PLAN_MAX` match.
        """

    async def replay_plan(self, plan_id: int) -> ReplayPlan | None:
        """The plan with this id, None if there is none."""

    async def run_replay_plan(self, plan_id: int, actor: str) -> ReplayPlan:
        """Replay, as :meth:`replay` does, exactly the plan's deliveries that are still dead,
        and record that it ran, by whom and how many it replayed; all in one transaction,
        audited. Deliveries the filter matches only since are left; ones replayed meanwhile
        are skipped. Raises NoSuchPlan, or PlanAlreadyRun for a plan run before.
        """

    # -- retention

    async def prune(
        self, *, done_before: datetime, quarantine_before: datetime, limit: int = 500,
    ) -> Pruned:
        """Delete, in one short transaction, at most ``limit`` done deliveries created and
        last updated before ``done_before``, oldest first, and at most ``limit`` quarantined
        requests last seen before ``quarantine_before``; a pruned delivery's attempts go with
        it. Payments, pending and dead deliveries, and the done counts of
        :meth:`plugin_states` are kept. Fewer than ``limit`` of both means none is left to
        prune for now. Any number of processes may prune at once.
        """

    # -- effects (:meth:`arrears_router.Delivery.once`), by idempotency key

    async def begin_effect(self, key: str) -> EffectRecord | None:
        """Record that the effect of ``key`` begins, committed durably before returning,
        unless it is recorded already: that earlier record then, unchanged; None when this
        call made it (of concurrent calls for one key, exactly one).
        """

    async def end_effect(self, key: str, *, done: bool) -> None:
        """The begun effect of ``key`` is done; or (``done=False``) it did not happen: its
        record goes. A done one stays done; a key not recorded is left so."""

    async def effect(self, key: str) -> EffectRecord | None: ...


# The audit log's words, the same from every backend.


def mode_detail(old: str | None, new: str) -> str:
    """A mode change's :attr:`AuditEntry.detail`: ``paused -> enabled``; ``-`` for a plugin
    new to the store."""
    return f"{old or '-'} -> {new}"


def replay_filter(plugin: str | None, since: datetime | None, until: datetime | None) -> str:
    """A replay's filter of dead deliveries as the audit log names it: ``plugin=a
    since=... until=...``, the parts given, times in UTC; ``all`` for none."""
    parts = [] if plugin is None else [f"plugin={plugin}"]
    parts += [f"{name}={at.astimezone(UTC).isoformat()}"
              for name, at in (("since", since), ("until", until)) if at is not None]
    return " ".join(parts) or "all"


def check_store_url(url: str) -> None:
    """Raise StoreError unless ``url`` names a store this router can open. The message names
    the URL's scheme only: a database URL may hold a password."""
    if file_of(url) is not None:
        return
    if is_postgres_url(url):
        try:
            from arrears_router.store import postgres_schema
        except ImportError:
            raise StoreError("a postgresql:// store needs the PostgreSQL driver: install"
                             " arrears-router[postgresql]") from None
        try:
            postgres_schema.check_url(url)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        return
    scheme = url.partition(":")[0] if ":" in url else "none"
    raise StoreError(f"unsupported store url: scheme {scheme!r}; expected sqlite:///PATH or"
                     " postgresql://USER@HOST:PORT/DATABASE")


def shown_store_url(url: str) -> str:
    """``url`` as a command may print it: a password in it, before the host or as a
    ``password=`` option, replaced with ``***``."""
    shown = re.sub(r"^([a-z]+://[^:/@?#]*):[^/?#]*@", r"\1:***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", shown)


def is_postgres_url(url: str) -> bool:
    scheme, sep, _ = url.partition("://")
    return bool(sep) and scheme in ("postgresql", "postgres")


def open_store(url: str, *, readonly: bool = False) -> Store:
    """The store for ``url``; not yet opened. ``readonly`` never writes nor locks."""
    check_store_url(url)
    path = file_of(url)
    if path is None:
        from arrears_router.store.postgres import PostgresStore

        return PostgresStore(url, readonly=readonly)
    from arrears_router.store.sqlite import SqliteStore

    return SqliteStore(path, readonly=readonly)


class SchemaStatus(msgspec.Struct, frozen=True, kw_only=True):
    found: int
    """The schema version the store has: 0 for a store not made yet."""
    known: int
    """The version this arrears-router migrates it to."""


def schema_status(url: str) -> SchemaStatus:
    """The schema version of the store at ``url`` and the one this code knows, read without
    writing or locking anything (for deploy scripts: ``arrears-router migrate --check``)."""
    check_store_url(url)
    path = file_of(url)
    if path is None:
        from arrears_router.store import postgres_schema

        found = postgres_schema.found_version(url)
        known = len(postgres_schema.MIGRATIONS)
    else:
        from arrears_router.store import sqlite_schema

        found = sqlite_schema.file_version(path)
        known = len(sqlite_schema.MIGRATIONS)
    return SchemaStatus(found=found, known=known)
