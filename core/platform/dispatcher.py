"""The dispatcher: claims due deliveries and runs each on its one plugin, isolated.

Runs inside ``serve`` and as ``arrears-router worker``; any number of them may share a store,
since a delivery is leased to one claimer at a time. A crash leaves the lease to lapse and
the delivery runs again: delivery is at least once, so plugins dedupe on the idempotency key.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import Counter
from functools import partial

import msgspec

from arrears_router.delivery import Delivery, idempotency_key
from arrears_router.errors import PermanentError, RetryableError
from arrears_router.logs import add_context, log_context
from arrears_router.metrics import Outcome, count_attempt
from arrears_router.platform.deadlines import Deadlines
from arrears_router.platform.outcomes import (
    OutcomeWriter,
    below,
    dead,
    describe_error,
    describe_traceback,
    done,
    failed,
)
from arrears_router.platform.registry import LoadedPlugin, Registry
from arrears_router.store import (
    Accepted,
    ClaimedDelivery,
    ClaimLimit,
    DeliveryResult,
    DeliveryStatus,
    NewEvent,
    Store,
    StoreError,
)

__all__ = ["Dispatcher"]

log = logging.getLogger("arrears_router.dispatch")

# A lease outlives its call's timeout by this much, so a slow commit cannot double a delivery.
LEASE_GRACE = 5.0


def _lease(plugin: LoadedPlugin) -> float:
    return plugin.policy.timeout + LEASE_GRACE


_OUTCOMES = {DeliveryStatus.DONE: Outcome.DONE, DeliveryStatus.PENDING: Outcome.RETRY,
             DeliveryStatus.DEAD: Outcome.DEAD}
"""An attempt's recorded outcome, as /metrics counts it."""


class Dispatcher:
    def __init__(
        self, store: Store, registry: Registry, *, poll_interval: float = 0.25, batch: int = 256
    ) -> None:
        self.store = store
        store.on_work(self.wake)
        self.registry = registry
        self.poll_interval = poll_interval
        self.batch = batch
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._inflight: Counter[str] = Counter()
        """Deliveries running, and slots held for deliveries being claimed, by plugin."""
        self._behind: set[str] = set()
        """Plugins that may have due deliveries left unclaimed for want of room."""
        self._tasks: dict[asyncio.Task[None], str] = {}
        """Deliveries running, with their plugin: each ends once its outcome is handed to
        ``_outcomes``."""
        self._announcing: set[asyncio.Task[None]] = set()
        """Flagged payments and dead deliveries being told to every plugin; each holds its
        delivery's slot, so a burst of them is bounded as the deliveries were."""
        self._outcomes = OutcomeWriter(store)
        self._deadlines = Deadlines()
        self._running: asyncio.Task[object] | None = None
        """The task in :meth:`run`, if it was started."""

    @property
    def registry(self) -> Registry:
        """Replaced on a config reload; deliveries in flight finish with the one they began."""
        return self._registry

    @registry.setter
    def registry(self, registry: Registry) -> None:
        self._registry = registry
        self._awaited = {name for plugin in registry.plugins.values()
                         for name in plugin.policy.after}
        """Plugins that others run after: their outcomes may make deliveries due."""

    def wake(self) -> None:
        """Deliveries may be due now: claim at once, not at the next poll."""
        self._wakeup.set()

    async def accept(self, event: NewEvent) -> Accepted:
        """Store a payment and start its deliveries at once. They are claimed in the
        transaction that stores the payment, which is handed to them in memory: no claim
        transaction, read or decode is spent on them. A plugin with no room now, paused, or
        that runs after others, gets its delivery from a later claim.
        """
        plugins = {} if self._stopping else {
            name: plugin for name, plugin in self.registry.plugins.items()
            if not plugin.policy.after and self._inflight[name] < plugin.policy.concurrency
        }
        self._inflight.update(plugins.keys())
        try:
            accepted, claimed = await self.store.accept_and_claim(
                event, {name: _lease(plugin) for name, plugin in plugins.items()}
            )
        except BaseException:
            for name in plugins:
                self._release(name)
            raise
        for name in plugins.keys() - {delivery.plugin for delivery in claimed}:
            self._release(name)
        for delivery in claimed:
            # Run with the registry of now: a config reload may have replaced it meanwhile,
            # and stopped the plugins it had. One dropped since runs nothing; its lease lapses.
            plugin = self.registry.plugins.get(delivery.plugin)
            if plugin is None:
                self._release(delivery.plugin)
            else:
                self._start(plugin, delivery)
        if accepted is Accepted.STORED:
            self._behind.update(self.registry.plugins.keys() - plugins.keys())
        return accepted

    async def run(self) -> None:
        self._running = asyncio.current_task()
        while not self._stopping:
            self._wakeup.clear()
            if not await self._claim():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wakeup.wait()

    async def _claim(self) -> int:
        """Claim for every plugin with room, in one transaction; start each delivery.

        The poll finds what nothing announces: retries come due, lapsed leases, mode changes,
        deliveries stored by other processes.
        """
        plugins = {name: plugin for name, plugin in self.registry.plugins.items()
                   if self._room(plugin)}
        if not plugins:
            return 0
        wants = {name: ClaimLimit(min(plugin.policy.concurrency - self._inflight[name],
                                      self.batch), _lease(plugin))
                 for name, plugin in plugins.items()}
        # The slots are held while the claim is out, as accept() holds its own: deliveries
        # claimed at birth meanwhile must not take a plugin past its concurrency.
        self._inflight.update({name: want.limit for name, want in wants.items()})
        try:
            claimed = await self.store.claim(wants)
        except StoreError as exc:
            log.warning("cannot claim deliveries: %s", exc)
            claimed = []
        counts = Counter(delivery.plugin for delivery in claimed)
        for name, want in wants.items():  # a full claim may have left more behind
            (self._behind.add if counts[name] == want.limit else self._behind.discard)(name)
            self._inflight[name] -= want.limit - counts[name]
        for delivery in claimed:
            self._start(plugins[delivery.plugin], delivery)
        return len(claimed)

    def _room(self, plugin: LoadedPlugin) -> bool:
        """Claim in batches: a claim is a write transaction, too dear to spend on each slot
        that frees up while the plugin's other calls are still busy."""
        inflight = self._inflight[plugin.name]
        free = plugin.policy.concurrency - inflight
        return free > 0 and not (inflight and free < plugin.policy.concurrency // 2)

    def _start(self, plugin: LoadedPlugin, delivery: ClaimedDelivery) -> None:
        """Run a claimed delivery; its slot is already counted in ``_inflight``, and freed
        once its outcome is recorded."""
        task = asyncio.get_running_loop().create_task(self._deliver(plugin, delivery))
        self._tasks[task] = plugin.name
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        plugin = self._tasks.pop(task)
        # Cancelled (not by its timeout), perhaps before it began, or failed outside the
        # plugin's call: no outcome will free its slot. The lease lapses, it runs again.
        if task.cancelled():
            self._release(plugin)
        elif (exc := task.exception()) is not None:
            log.error("a delivery to %s failed outside its call; it will run again", plugin,
                      exc_info=exc)
            self._release(plugin)

    def _release(self, plugin: str) -> None:
        self._inflight[plugin] -= 1
        if plugin in self._behind:  # a slot is free for what was left unclaimed
            self._wakeup.set()

    async def drain(self) -> None:
        """Wait for the deliveries in flight now (those begun with a replaced registry), for
        their outcomes to be recorded, and for the hooks those call."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self._outcomes.drain()
        if self._announcing:
            await asyncio.wait(set(self._announcing))

    async def stop(self) -> None:
        """Stop claiming; let calls in flight finish within their timeouts."""
        self._stopping = True
        self._wakeup.set()
        if self._running is not None:  # a claim under way starts its deliveries first
            await asyncio.wait({self._running})
        await self.drain()

    async def _deliver(self, plugin: LoadedPlugin, claimed: ClaimedDelivery) -> None:
        payment = claimed.payment
        delivery = Delivery(
            id=claimed.id, plugin=plugin.name, attempt=claimed.attempt,
            idempotency_key=idempotency_key(payment.mch_id, payment.transaction_id, plugin.name),
            settings=plugin.settings, log=plugin.log, effects=self.store,
        )
        # Whatever is logged in the attempt, by the plugin or a library it calls, says which.
        with log_context(plugin=plugin.name, delivery_id=claimed.id, attempt=claimed.attempt,
                         mch_id=payment.mch_id, transaction_id=payment.transaction_id):
            result = await self._attempt(plugin, claimed, delivery)
            if result.status is DeliveryStatus.DONE:
                log.debug("delivery %d to %s done", claimed.id, plugin.name)
            # A flag or a death is told from this delivery's context, as the plugin left it.
            told = (contextvars.copy_context()
                    if delivery.flags or result.status is DeliveryStatus.DEAD else None)
        self._outcomes.record(
            result, partial(self._recorded, plugin, claimed, delivery, result, told))

    def _recorded(self, plugin: LoadedPlugin, claimed: ClaimedDelivery, delivery: Delivery,
                  result: DeliveryResult, told: contextvars.Context | None,
                  recorded: bool | StoreError) -> None:
        count_attempt(plugin.name, _OUTCOMES[result.status] if recorded is True else Outcome.LOST,
                      result.duration_s)
        keys = {"plugin": plugin.name, "delivery_id": claimed.id, "attempt": claimed.attempt}
        if isinstance(recorded, StoreError):
            log.error("delivery %d: cannot record its outcome (%s); it will run again",
                      claimed.id, recorded, extra=keys)
        elif not recorded:
            log.warning("delivery %d: its lease lapsed and another claimer took it", claimed.id,
                        extra=keys)
        elif result.status is DeliveryStatus.DEAD or (
                delivery.flags and result.status is DeliveryStatus.DONE):
            task = asyncio.get_running_loop().create_task(
                self._announce(plugin, claimed, delivery, result), context=told)
            self._announcing.add(task)
            task.add_done_callback(partial(self._announced, plugin.name))
            return
        self._finished(plugin.name)

    def _announced(self, plugin: str, task: asyncio.Task[None]) -> None:
        self._announcing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("telling the plugins of a delivery to %s failed", plugin, exc_info=exc)
        self._finished(plugin)

    def _finished(self, plugin: str) -> None:
        """A delivery is over, its outcome recorded (or not) and announced."""
        self._release(plugin)
        if plugin in self._awaited:  # deliveries that run after it may be due
            self._wakeup.set()

    async def _announce(self, plugin: LoadedPlugin, claimed: ClaimedDelivery,
                        delivery: Delivery, result: DeliveryResult) -> None:
        """Tell every plugin of a flagged payment, or of a dead delivery."""
        for reason in delivery.flags if result.status is DeliveryStatus.DONE else ():
            log.warning("delivery %d: %s flagged the payment: %s", claimed.id, plugin.name, reason)
            await self.registry.announce_flag(payment=claimed.payment, delivery=delivery,
                                              reason=reason)
        if result.status is DeliveryStatus.DEAD:
            log.error("delivery %d to %s is dead: %s%s", claimed.id, plugin.name, result.error,
                      below(result.traceback))
            await self.registry.announce_dead(payment=claimed.payment, delivery=delivery,
                                              error=result.error)

    async def _attempt(
        self, plugin: LoadedPlugin, claimed: ClaimedDelivery, delivery: Delivery
    ) -> DeliveryResult:
        policy = plugin.policy
        retry_after: float | None = None
        result: DeliveryResult | None = None
        watch = self._deadlines.watch(policy.timeout)
        started = time.perf_counter()
        try:
            note = await self.registry.arrears_paid(
                plugin.name, payment=claimed.payment, delivery=delivery)
        except asyncio.CancelledError as exc:
            if not watch.expired:
                raise
            # Its frames show where the call was when its time ran out.
            error, trace = f"timed out after {policy.timeout:g} s", describe_traceback(exc)
        except PermanentError as exc:
            result = dead(claimed, describe_error(exc), describe_traceback(exc))
        except Exception as exc:  # a RetryableError, and any other: retried
            error, trace = describe_error(exc), describe_traceback(exc)
            if isinstance(exc, RetryableError):
                retry_after = exc.retry_after
        else:
            result = done(claimed, note, delivery.flags)
        finally:
            self._deadlines.end(watch)
            took = time.perf_counter() - started
            add_context(duration_s=took)
        if result is None:  # failed: logged as retried, with its duration in the context
            result = failed(claimed, plugin.name, policy, error, trace, retry_after)
        # The attempt's wall time goes with its outcome into the delivery's history.
        return msgspec.structs.replace(result, duration_s=took)
