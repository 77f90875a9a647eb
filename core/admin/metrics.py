"""``GET /metrics``: Prometheus's text format, for a scraper; no token, as scrapers send none.

What the host's processes counted (``arrears_router.metrics``), summed, and gauges of the
store's state sampled at each scrape with the store's bounded reads: deliveries by plugin and
status, each plugin's oldest pending delivery, what the quarantine keeps. The store is read
on the loop, as every admin route reads it; the files are read on a thread.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from arrears_router.metrics import CONTENT_TYPE, exposition
from arrears_router.store import Store, StoreError

__all__ = ["metrics_route", "sample_store"]

log = logging.getLogger("arrears_router.admin")
MEDIA_TYPE = CONTENT_TYPE.removesuffix("; charset=utf-8")
"""Litestar adds the charset to a text type itself."""


async def sample_store(store: Store) -> list[Metric]:
    """The store's state as gauges: one series a plugin and status, however long the
    history (``done`` is a counter the store keeps, pending and dead are backlogs)."""
    deliveries = GaugeMetricFamily(
        "arrears_deliveries", "Deliveries by plugin and status, now.", labels=["plugin", "status"])
    oldest = GaugeMetricFamily(
        "arrears_delivery_oldest_pending_timestamp_seconds", "When the oldest pending delivery"
        " of a plugin was made (Unix time); absent while none is pending.", labels=["plugin"])
    for state in await store.plugin_states():
        for status, count in (("pending", state.pending), ("done", state.done),
                              ("dead", state.dead)):
            deliveries.add_metric([state.name, status], count)
        if state.oldest_pending_at is not None:
            oldest.add_metric([state.name], state.oldest_pending_at.timestamp())
    quarantine = await store.quarantine_stats()
    rows = GaugeMetricFamily("arrears_quarantine_kept", "Quarantined requests kept, now.",
                             value=quarantine.rows)
    size = GaugeMetricFamily("arrears_quarantine_kept_bytes", "Bytes of the quarantined"
                             " requests' bodies kept, now.", value=quarantine.bytes)
    return [deliveries, oldest, rows, size]


def metrics_route(store: Store, directory: Path) -> HTTPRouteHandler:
    """``GET /metrics``: the sums of what this host's processes counted into ``directory``
    (``arrears_router.metrics.metrics_dir``), and ``store``'s state."""

    @get("/metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        try:
            sampled = await sample_store(store)
        except StoreError as exc:  # the counts still tell what happened; alert on absent()
            log.warning("metrics: the store's gauges are left out: %s", exc)
            sampled = []
        body = await asyncio.to_thread(exposition, directory, sampled)
        return Response(body, media_type=MEDIA_TYPE)

    return metrics
