"""Plugins for the platform's tests, importable by a router process as ``tests.sample_plugins``.

Each writes what it did as a line in a file, so an effect can be counted after a crash.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from pathlib import Path

import msgspec

from arrears_router import (
    ArrearsPayment,
    Delivery,
    PermanentError,
    ReconcileReport,
    RetryableError,
    hookimpl,
)

HOLDS: dict[str, threading.Event] = {}
"""Gates a test opens to let held calls go on, by name (routers in the test's process)."""


async def _held(name: str) -> None:
    if name:
        await asyncio.to_thread(HOLDS.setdefault(name, threading.Event()).wait, 60)


def _append(path: str, line: str) -> None:
    with Path(path).open("a", encoding="utf-8") as file:
        file.write(line + "\n")


def _effect_once(path: str, key: str) -> bool:
    """The plugin's effect, idempotent on the key: False if it was already done."""
    if f"effect {key}" in Path(path).read_text(encoding="utf-8").splitlines():
        return False
    _append(path, f"effect {key}")
    return True


class Recorder:
    """Records each payment once per idempotency key; can be told to misbehave first."""

    name = "recorder"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        path: str
        fail_attempts: int = 0
        """Raise a plain exception on attempts up to this one."""
        retry_after: float | None = None
        """With fail_attempts: raise RetryableError with this retry_after instead."""
        hang_attempts: int = 0
        """Never return on attempts up to this one."""
        permanent: bool = False
        slow: float = 0.0
        """Seconds each call takes, so a test can kill a process in the middle of one."""
        hold: str = ""
        """A gate in HOLDS: each call waits for it to open before it goes on."""
        flag: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @hookimpl
    def router_started(self, store_url: str) -> None:
        _append(self.settings.path, f"started {store_url}")

    @hookimpl
    async def router_stopping(self) -> None:
        _append(self.settings.path, "stopping")

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        s = self.settings
        _append(s.path, f"call {delivery.plugin} {payment.transaction_id} {delivery.attempt}")
        if delivery.attempt <= s.hang_attempts:
            await asyncio.sleep(3600)
        await _held(s.hold)
        if s.permanent:
            raise PermanentError("refused for good")
        if delivery.attempt <= s.fail_attempts:
            if s.retry_after is not None:
                raise RetryableError("busy", retry_after=s.retry_after)
            raise RuntimeError("flaky")
        if s.slow:
            await asyncio.sleep(s.slow)
            _append(s.path, f"leave {delivery.plugin} {payment.transaction_id}")
        if s.flag:
            delivery.flag(f"{payment.repay_no} needs a look")
        if not _effect_once(s.path, delivery.idempotency_key):
            return "duplicate: already done"
        return f"recorded {payment.total_fee} fen"


class SyncRecorder:
    """A synchronous hook taking only the argument it needs."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        path: str

    def __init__(self, settings: Settings) -> None:
        self.path = settings.path

    @hookimpl
    def arrears_paid(self, payment: ArrearsPayment) -> None:
        _append(self.path, f"sync {payment.transaction_id}")


class DeadLetters:
    """Alerts on dead deliveries, of any plugin: the dead-letter hook's user."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        path: str
        hold: str = ""
        """A gate in HOLDS: each flag waits for it to open before it is written down."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.path
        self.hold = settings.hold

    @hookimpl
    def delivery_dead(self, payment: ArrearsPayment, delivery: Delivery, error: str) -> None:
        _append(self.path, f"dead {delivery.plugin} {payment.transaction_id} {error}")

    @hookimpl
    async def payment_flagged(self, delivery: Delivery, reason: str) -> None:
        if self.hold:
            _append(self.path, f"flagging {delivery.plugin}")
            await _held(self.hold)
        _append(self.path, f"flagged {delivery.plugin} {reason}")

    @hookimpl
    def reconciled(self, report: ReconcileReport) -> None:
        counts = report.counts
        _append(self.path, f"reconciled {report.mch_id} {report.day} #{report.id}"
                           f" missing {counts.missing} matched {counts.matched}")


class Faulty:
    """Fails in every hook but the main one, which it does not implement: no other plugin
    may notice; a failed start (if told to fail it) stops the router's start."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        fail_start: bool = False

    def __init__(self, settings: Settings) -> None:
        self.fail_start = settings.fail_start

    @hookimpl
    def router_started(self) -> None:
        if self.fail_start:
            raise OSError("no such printer")

    @hookimpl
    def router_stopping(self) -> None:
        raise OSError("printer on fire")

    @hookimpl
    def payment_flagged(self) -> None:
        raise OSError("no paper")

    @hookimpl
    def delivery_dead(self) -> None:
        raise OSError("no ink")

    @hookimpl
    def reconciled(self) -> None:
        raise OSError("out of toner")


DELIVERY_NOTE: contextvars.ContextVar[str] = contextvars.ContextVar("delivery_note")


class ContextFlagger:
    """Flags each payment, leaving a context variable set in its call; writes down, for each
    flag it hears of, whose flag and the variable as the telling sees it."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        path: str

    def __init__(self, settings: Settings) -> None:
        self.path = settings.path

    @hookimpl
    async def arrears_paid(self, delivery: Delivery) -> None:
        DELIVERY_NOTE.set(f"set by {delivery.plugin}")
        delivery.flag("look")

    @hookimpl
    async def payment_flagged(self, delivery: Delivery) -> None:
        _append(self.path, f"flag of {delivery.plugin}: {DELIVERY_NOTE.get('unset')}")


class Stuck:
    """A synchronous hook that blocks its thread until its gate in HOLDS opens, as a plugin
    stuck on a dead socket does: its calls time out, but their threads stay taken."""

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        gate: str

    def __init__(self, settings: Settings) -> None:
        self.gate = HOLDS.setdefault(settings.gate, threading.Event())

    @hookimpl
    def arrears_paid(self) -> None:
        self.gate.wait(120)
