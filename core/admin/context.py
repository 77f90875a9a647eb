"""What every admin route works with: the store, and the config as it is now."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from arrears_router.admin.live_config import LiveConfig
from arrears_router.store import Store

__all__ = ["Admin"]


class Admin:
    def __init__(self, store: Store, live: LiveConfig) -> None:
        self.store = store
        self.live = live

    @contextlib.asynccontextmanager
    async def opened(self, _: Any) -> AsyncIterator[None]:
        """The store, open while the app runs (a Litestar lifespan)."""
        await self.store.open()
        try:
            yield
        finally:
            await self.store.close()
