"""Plugins: found, configured, validated and called one at a time.

Discovery order: the built-ins (``plugins.BUILTINS``), then installed packages (the
``arrears_router.plugins`` entry-point group), then ``use = "module:Class"`` in config.
Only plugins named in ``[plugins.NAME]`` are loaded; an installed package alone does nothing.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from typing import Annotated, Any, cast

import msgspec
import pluggy
from pluggy import HookImpl

from arrears_router import hookspecs
from arrears_router.config import ConfigError, describe
from arrears_router.delivery import Delivery
from arrears_router.hookspecs import PROJECT
from arrears_router.payment import ArrearsPayment
from arrears_router.platform.threads import PluginThreads
from arrears_router.reconcile.report import ReconcileReport
from arrears_router.store import Mode

__all__ = [
    "ENTRY_POINT_GROUP",
    "LoadedPlugin",
    "PluginPolicy",
    "Registry",
    "RegistryError",
    "command_hooks",
]

ENTRY_POINT_GROUP = "arrears_router.plugins"
log = logging.getLogger("arrears_router.registry")


class PluginPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The router's keys in ``[plugins.NAME]``; every other key is the plugin's own setting."""

    mode: Mode = Mode.ENABLED
    after: tuple[str, ...] = ()
    """Plugins whose delivery of a payment must be done before this one's runs."""
    use: str = ""
    """``module:Class`` of a plugin that is neither built in nor an installed package."""
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Seconds one call may take before it counts as a failed attempt."""
    concurrency: Annotated[int, msgspec.Meta(ge=1)] = 8
    """Calls in flight at once, per process."""
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 12
    backoff: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    """Seconds before the first retry; doubled for each retry after it, with jitter."""
    backoff_cap: Annotated[float, msgspec.Meta(gt=0)] = 3600.0


ROUTER_KEYS = frozenset(PluginPolicy.__struct_fields__)


def _warn_if_outlasting(name: str, settings: Any, policy: PluginPolicy) -> None:
    """A plugin's own request timeout at or over the router's is cut short by the router."""
    request_timeout = getattr(settings, "request_timeout", None)
    if isinstance(request_timeout, int | float) and request_timeout >= policy.timeout:
        log.warning("plugins.%s.request_timeout (%g s) is not below its timeout (%g s): the"
                    " router will cut calls short", name, request_timeout, policy.timeout)


def _identity(plugin_class: type) -> type:
    return plugin_class


class RegistryError(Exception):
    """A plugin cannot be loaded; the message names the config key."""


@dataclass(frozen=True, slots=True)
class LoadedPlugin:
    name: str
    instance: object
    settings: Any
    policy: PluginPolicy
    log: logging.Logger


def _import(path: str, where: str) -> type:
    module_name, _, attribute = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise RegistryError(f"{where}: cannot import {path!r}: {exc}") from None
    if not isinstance(found, type):
        raise RegistryError(f"{where}: {path!r} is not a class")
    return found


def available_plugins() -> dict[str, Callable[[], type]]:
    """Every plugin this installation can load, by name, imported only when used."""
    from arrears_router.plugins import BUILTINS

    found: dict[str, Callable[[], type]] = {
        name: partial(_import, path, f"plugins.{name}") for name, path in BUILTINS.items()
    }
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry.name, partial(_load_entry, entry))
    return found


def _load_entry(entry: EntryPoint) -> type:
    """An installed package's plugin class; a package that cannot load is named, with why."""
    try:
        found = entry.load()
    except Exception as exc:  # its bug: the sentence names it, its traceback goes along
        raise RegistryError(f"plugins.{entry.name}: the installed package's {entry.value!r}"
                            f" cannot be loaded: {exc!r}") from exc
    if not isinstance(found, type):
        raise RegistryError(f"plugins.{entry.name}: {entry.value!r} is not a class")
    return found


def _settings_of(cls: type, values: dict[str, Any], where: str) -> Any:
    settings_type = getattr(cls, "Settings", None)
    if settings_type is None:
        if values:
            raise RegistryError(f"{where}.{next(iter(values))}: this plugin takes no settings")
        return None
    try:
        return msgspec.convert(values, settings_type)
    except msgspec.ValidationError as exc:
        raise RegistryError(describe(exc, where, settings_type)) from None


def _check_order(policies: Mapping[str, PluginPolicy]) -> None:
    for name, policy in policies.items():
        for before in policy.after:
            if before not in policies:
                raise RegistryError(f"plugins.{name}.after: {before!r} is not a configured plugin")
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise RegistryError(f"plugins.{name}.after: a cycle: {cycle}")
        visiting.append(name)
        for before in policies[name].after:
            visit(before)
        visiting.pop()
        done.add(name)

    for name in policies:
        visit(name)


class Registry:
    """The loaded plugins and their pluggy manager. Build one with :meth:`load`."""

    def __init__(self, plugins: Mapping[str, LoadedPlugin], manager: pluggy.PluginManager) -> None:
        self.plugins = dict(plugins)
        self.manager = manager
        self._impls: dict[tuple[str, str], HookImpl] = {}
        self._async: set[tuple[str, str]] = set()
        """Implementations that are coroutine functions, found once rather than per call."""
        self._threads = {name: PluginThreads(name, p.policy.concurrency)
                         for name, p in self.plugins.items()}
        for hook_name, hook in vars(manager.hook).items():
            for impl in hook.get_hookimpls():
                self._impls[(impl.plugin_name, hook_name)] = impl
                if inspect.iscoroutinefunction(impl.function):
                    self._async.add((impl.plugin_name, hook_name))

    @classmethod
    def load(
        cls,
        config: Mapping[str, Mapping[str, Any]],
        *,
        autoload: bool = True,
        classes: Mapping[str, type] | None = None,
    ) -> Registry:
        """Load the plugins named in ``[plugins.*]``.

        :param autoload: look in the built-ins and installed packages; off, only ``classes``
            and ``use =`` paths are known (tests, and the plugin test kit).
        :param classes: plugin classes by name, known in addition to the discovered ones.
        """
        known: dict[str, Callable[[], type]] = available_plugins() if autoload else {}
        for name, plugin_class in (classes or {}).items():
            known[name] = partial(_identity, plugin_class)
        manager = pluggy.PluginManager(PROJECT)
        manager.add_hookspecs(hookspecs)
        loaded: dict[str, LoadedPlugin] = {}
        for name, table in config.items():
            where = f"plugins.{name}"
            router_keys = {k: v for k, v in table.items() if k in ROUTER_KEYS}
            try:
                policy = msgspec.convert(router_keys, PluginPolicy)
            except msgspec.ValidationError as exc:
                raise RegistryError(describe(exc, where, PluginPolicy)) from None
            if policy.use:
                plugin_class = _import(policy.use, f"{where}.use")
            elif name in known:
                plugin_class = known[name]()
            else:
                choices = ", ".join(sorted(known)) or "none installed"
                raise RegistryError(
                    f"{where}: unknown plugin (known: {choices}); "
                    'for another one set use = "module:Class"'
                )
            settings = _settings_of(
                plugin_class, {k: v for k, v in table.items() if k not in ROUTER_KEYS}, where
            )
            try:
                instance = plugin_class() if settings is None else plugin_class(settings)
                manager.register(instance, name=name)
            except pluggy.PluginValidationError as exc:
                raise RegistryError(f"{where}: {exc}") from None
            except ConfigError as exc:  # a plugin's own check, its message led by the key
                raise RegistryError(f"{where}.{exc}") from None
            except Exception as exc:  # its bug: the sentence names it, its traceback goes along
                raise RegistryError(f"{where}: the plugin failed to build: {exc!r}") from exc
            _warn_if_outlasting(name, settings, policy)
            loaded[name] = LoadedPlugin(
                name, instance, settings, policy, logging.getLogger(f"arrears_router.plugin.{name}")
            )
        try:
            manager.check_pending()  # a hook implemented under a misspelt name
        except pluggy.PluginValidationError as exc:
            raise RegistryError(f"plugins: {exc}") from None
        _check_order({name: p.policy for name, p in loaded.items()})
        registry = cls(loaded, manager)
        registry._warn_about_defaults()
        return registry

    def _warn_about_defaults(self) -> None:
        for (plugin, hook_name), impl in self._impls.items():
            if impl.kwargnames:
                log.warning(
                    "plugin %s: %s's parameters with defaults (%s) are never passed by pluggy;"
                    " remove their defaults", plugin, hook_name, ", ".join(impl.kwargnames),
                )

    # -- the hooks, each called the way its contract says

    async def arrears_paid(self, plugin: str, *, payment: ArrearsPayment,
                           delivery: Delivery) -> str | None:
        """Run one plugin's delivery of a payment; what it raises is the caller's to judge."""
        note = await self._call(plugin, "arrears_paid", payment=payment, delivery=delivery)
        return None if note is None else str(note)

    async def announce_flag(self, *, payment: ArrearsPayment, delivery: Delivery,
                            reason: str) -> None:
        """Tell every plugin that ``delivery.plugin`` flagged a payment for a person."""
        await self._call_each("payment_flagged", payment=payment, delivery=delivery,
                              reason=reason)

    async def announce_dead(self, *, payment: ArrearsPayment, delivery: Delivery,
                            error: str) -> None:
        """Tell every plugin that a delivery gave up."""
        await self._call_each("delivery_dead", payment=payment, delivery=delivery, error=error)

    async def announce_reconciled(self, *, report: ReconcileReport) -> None:
        """Tell every plugin that a reconciliation report was made and kept."""
        await self._call_each("reconciled", report=report)

    async def start_all(self, store_url: str) -> None:
        """``router_started`` on each plugin in turn. When one fails, those already started
        are stopped again and :class:`RegistryError` names the one that failed."""
        started: list[str] = []
        for name in self.plugins:
            try:
                await self._call(name, "router_started", store_url=store_url)
            except Exception as exc:
                await self._call_each("router_stopping", plugins=started)
                self._end_threads()
                raise RegistryError(f"plugins.{name}: router_started failed: {exc!r}") from exc
            started.append(name)

    async def stop_all(self) -> None:
        """``router_stopping`` on every plugin; a failure is logged and the others still stop.
        Their threads then end, but for any stuck in a call: stopping does not wait for it."""
        await self._call_each("router_stopping")
        self._end_threads()

    def _end_threads(self) -> None:
        for threads in self._threads.values():
            threads.shutdown()

    # -- one implementation at a time

    async def _call(self, plugin: str, hook_name: str, **kwargs: Any) -> Any:
        """Call ONE plugin's implementation of a hook: pluggy would stop the whole chain at
        the first that raises, and one plugin's failure must never touch another.
        A sync implementation runs on one of the plugin's own threads, so a slow one cannot
        stall the others and the caller's timeout still applies.
        """
        impl = self._impls.get((plugin, hook_name))
        if impl is None:
            return None
        args = [kwargs[name] for name in impl.argnames]
        if (plugin, hook_name) in self._async:
            return await cast("Awaitable[Any]", impl.function(*args))
        result = await self._threads[plugin].run(impl.function, *args)
        if inspect.isawaitable(result):
            return await result
        return result

    async def _call_each(self, hook_name: str, plugins: Iterable[str] | None = None,
                         **kwargs: Any) -> None:
        """Call a hook on each plugin (all of them by default) in turn; a failure is logged,
        never spread."""
        for plugin in list(self.plugins) if plugins is None else plugins:
            try:
                await self._call(plugin, hook_name, **kwargs)
            except Exception:
                log.exception("plugin %s failed in %s", plugin, hook_name)


def command_hooks() -> tuple[dict[str, Callable[..., object]], dict[str, str]]:
    """Each built-in and installed plugin's ``register_commands``, by plugin name, and the
    plugins that could not even be imported, with why (the plugin named in the text).

    The hook lives in the module that defines the plugin class: commands exist before any
    config is read, so there is no configured instance to ask.
    """
    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(hookspecs)
    broken: dict[str, str] = {}
    for name, load in sorted(available_plugins().items()):
        try:
            module = sys.modules[load().__module__]
            if manager.is_registered(module):
                continue
            manager.register(module, name=name)
        except RegistryError as exc:
            broken[name] = str(exc)
        except Exception as exc:
            broken[name] = f"plugins.{name}: {exc!r}"
    return {impl.plugin_name: impl.function
            for impl in manager.hook.register_commands.get_hookimpls()}, broken
