"""Retention: done deliveries and quarantined requests past their age are deleted in the
background, a small batch at a time, so that intake never waits on it. Payments are kept.

Every serve and worker process prunes. Several at once on one store is harmless: each
batch deletes what is old at that moment, whoever deleted the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from arrears_router.store import Pruned, Store, StoreError

__all__ = ["BATCH", "MAX_INTERVAL_S", "Pruner"]

log = logging.getLogger("arrears_router.retention")

BATCH = 500
"""Rows of each kind one transaction deletes: a few milliseconds of the store's writer,
which the payments queued meanwhile wait for, then commit with."""
MAX_INTERVAL_S = 60.0


class Pruner:
    """Prunes the store every :attr:`interval` seconds, until cancelled."""

    def __init__(self, store: Store, *, keep_done: timedelta, keep_quarantine: timedelta,
                 batch: int = BATCH) -> None:
        self.store = store
        self.keep_done = keep_done
        self.keep_quarantine = keep_quarantine
        self.batch = batch
        # Half the shortest age kept, when under a minute: nothing outlives its age by much.
        self.interval = min(MAX_INTERVAL_S, min(keep_done, keep_quarantine).total_seconds() / 2)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.round()
            except Exception:  # a bug here must not end retention for the process's life
                log.exception("retention: the round failed; trying again in %g s",
                              self.interval)

    async def round(self) -> Pruned:
        """Prune batches until less than a batch of each kind is left, each batch followed
        by a pause as long as it took: pruning takes at most half of the writer's time. A
        store error ends the round; the next one tries again."""
        now = datetime.now(UTC)
        done_before, quarantine_before = now - self.keep_done, now - self.keep_quarantine
        deliveries = quarantine = 0
        try:
            while True:
                started = time.monotonic()
                pruned = await self.store.prune(done_before=done_before,
                                                quarantine_before=quarantine_before,
                                                limit=self.batch)
                deliveries += pruned.deliveries
                quarantine += pruned.quarantine
                if pruned.deliveries < self.batch and pruned.quarantine < self.batch:
                    break
                await asyncio.sleep(time.monotonic() - started)
        except StoreError as exc:
            log.warning("retention: cannot prune now, trying again in %g s: %s",
                        self.interval, exc)
        if deliveries or quarantine:
            log.info("retention: pruned %d done deliveries (older than %s) and %d quarantined"
                     " requests (not seen for %s)", deliveries, _shown(self.keep_done),
                     quarantine, _shown(self.keep_quarantine))
        return Pruned(deliveries=deliveries, quarantine=quarantine)


def _shown(age: timedelta) -> str:
    """``30d``, ``12h``, ``15m`` or ``45s``, as the config writes it."""
    seconds = int(age.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
