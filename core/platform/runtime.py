"""The router's moving parts, started, reloaded and stopped together.

``serve`` wraps this in the HTTP app; ``worker`` runs it alone; the plugin test kit runs it
in-process. A config edit is applied without a restart when it is valid, and logged and
ignored when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from functools import partial
from pathlib import Path

import msgspec

from arrears_router.config import Config, ConfigError, load_config
from arrears_router.logs import redact_secrets, secrets_in
from arrears_router.platform.dispatcher import Dispatcher
from arrears_router.platform.registry import Registry, RegistryError
from arrears_router.platform.retention import Pruner
from arrears_router.store import PluginRoute, Store, StoreError, open_store
from arrears_router.wire.envelope import encode_reply
from arrears_router.wire.intake import Intake
from arrears_router.wire.merchants import MerchantBook

__all__ = ["Router"]

log = logging.getLogger("arrears_router.runtime")
MODE_POLL_S = 0.5
"""Every router obeys a mode change at its next claim (claims read the mode); its log says so
within half a second, well inside the second promised."""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _routes(registry: Registry) -> list[PluginRoute]:
    return [PluginRoute(p.name, p.policy.mode, p.policy.after) for p in registry.plugins.values()]


def _restart_needed(running: Config, edited: Config) -> list[str]:
    """The keys an edit changed that a running router cannot take up: its listener, store and
    logging (set up once by each of ``serve``'s processes, of which only the engine reloads)."""
    return [
        f"{section}.{key}"
        for section in ("server", "store", "log")
        for key in msgspec.structs.asdict(getattr(edited, section))
        if getattr(getattr(edited, section), key) != getattr(getattr(running, section), key)
    ]


class Router:
    def __init__(
        self,
        config: Config,
        *,
        config_file: Path | None = None,
        dispatch: bool = True,
        store: Store | None = None,
        plugin_classes: Mapping[str, type] | None = None,
        autoload: bool = True,
    ) -> None:
        """:param config_file: watched for edits, which are applied live.
        :param dispatch: run deliveries in this process (off when separate workers do).
        :param plugin_classes: plugins known by name besides the discovered ones.
        """
        self.config = config
        redact_secrets(secrets_in(config))
        self.config_file = config_file
        self._config_text = _read(config_file) if config_file else ""
        self.store = store or open_store(config.store.url)
        self._load_plugins = partial(Registry.load, autoload=autoload, classes=plugin_classes)
        self.registry = self._load_plugins(config.plugins)
        self.intake = Intake(MerchantBook.from_config(config.merchants), self.store)
        self.dispatcher = Dispatcher(self.store, self.registry) if dispatch else None
        if self.dispatcher is not None:
            self.intake.accept = self.dispatcher.accept
        self._dispatching: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self._telling: asyncio.Task[None] | None = None
        self.pruner = Pruner(self.store, keep_done=config.store.keep_done,
                             keep_quarantine=config.store.keep_quarantine)
        self._pruning: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.store.open()
        try:
            await self.store.sync_plugins(_routes(self.registry))
            await self.registry.start_all(self.config.store.url)
        except BaseException:
            await self.store.close()
            raise
        if self.dispatcher is not None:
            self._dispatching = asyncio.create_task(self.dispatcher.run())
        if self.config_file is not None:
            self._watching = asyncio.create_task(self._watch(self.config_file))
        changes = await self.store.mode_changes(limit=1)
        self._telling = asyncio.create_task(self._tell_mode_changes(
            changes[0].id if changes else 0))
        self._pruning = asyncio.create_task(self.pruner.run())

    async def stop(self) -> None:
        for task in (self._watching, self._telling, self._pruning):
            if task is not None:
                task.cancel()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await asyncio.gather(
            *(t for t in (self._dispatching, self._watching, self._telling, self._pruning)
              if t),
            return_exceptions=True,
        )
        await self.registry.stop_all()
        await self.store.close()

    async def reload(self, config: Config) -> None:
        """Apply a new config: merchants at once; plugins, if changed, once the deliveries in
        flight with the old ones have finished. The store URL and server keys need a restart.
        """
        redact_secrets(secrets_in(config))  # before anything new logs; old keys stay masked
        if config.plugins != self.config.plugins:
            registry = self._load_plugins(config.plugins)
            await registry.start_all(config.store.url)
            old, self.registry = self.registry, registry
            await self.store.sync_plugins(_routes(registry))
            if self.dispatcher is not None:
                self.dispatcher.registry = registry
                await self.dispatcher.drain()
            await old.stop_all()
        self.intake.merchants = MerchantBook.from_config(config.merchants)
        unapplied = _restart_needed(self.config, config)
        # What runs is what the config now says, but for what only a restart applies.
        self.config = msgspec.structs.replace(config, server=self.config.server,
                                              store=self.config.store, log=self.config.log)
        if unapplied:
            log.warning("config reloaded, except what needs a restart: %s", ", ".join(unapplied))
        else:
            log.info("config reloaded")

    async def _tell_mode_changes(self, seen: int) -> None:
        """Log each mode change as this router comes to obey it, whoever made it and from
        which machine: the store's audit log says what was asked, this says who heard it."""
        while True:
            await asyncio.sleep(MODE_POLL_S)
            try:
                changes = await self.store.mode_changes(limit=50)
            except StoreError as exc:
                log.warning("cannot read the mode changes: %s", exc)
                continue
            for change in reversed([c for c in changes if c.id > seen]):
                log.info("plugin %s: %s -> %s by %s", change.plugin,
                         change.from_mode or "-", change.to_mode, change.actor)
                seen = change.id

    async def _watch(self, path: Path) -> None:
        from watchfiles import awatch

        path = await asyncio.to_thread(path.resolve)
        seen = self._config_text
        # Watch the folder: editors save by replacing the file, which ends a watch on the file
        # itself. The file's text is the truth; any event in the folder, or a second without
        # one, only says to look, so an edit made while the watch was being set up is not
        # missed (filtering events would: a busy store beside the file never lets it time out).
        async for _ in awatch(path.parent, recursive=False, rust_timeout=1000,
                              yield_on_timeout=True, watch_filter=None):
            text = await asyncio.to_thread(_read, path)
            if text == seen:
                continue
            seen = text
            try:
                config = load_config(path)
                await self.reload(config)
            except (ConfigError, RegistryError) as exc:
                log.error("config edit not applied, the running config stays: %s", exc)
            except Exception:
                log.exception("config edit not applied, the running config stays")

    async def receive(self, body: bytes) -> bytes:
        """The encoded reply to one notification's body."""
        return encode_reply(await self.intake.receive(body))

    async def ping(self) -> None:
        await self.store.ping()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Router]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()
