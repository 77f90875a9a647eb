"""A plugin that does nothing, for ``arrears-router bench``.

Written as a third party would write one, against the public API only, so the bench measures
what the platform costs a real plugin and nothing of the plugin's own. The bench enables it
as ``use = "arrears_router.bench.noop_plugin:NoOp"`` under as many names as ``--plugins``
asks.
"""

from __future__ import annotations

from arrears_router import hookimpl

__all__ = ["NoOp"]


class NoOp:
    name = "noop"

    @hookimpl
    async def arrears_paid(self) -> None:
        """Async, so the dispatcher awaits it on its loop rather than on a thread."""
