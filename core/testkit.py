"""A test kit for plugin authors, loaded by pytest through the ``pytest11`` entry point.

It runs a real router in the test's process — real HTTP on a free port, a real SQLite store
in the test's temporary folder, the real dispatcher — and sends it notifications signed and
encrypted as WeChat would. Fixtures only, nothing autouse; the router starts when asked.

    from arrears_router.testkit import RouterFactory

    def test_my_plugin(arrears_router: RouterFactory) -> None:
        router = arrears_router({"mine": {"url": "http://127.0.0.1:9/"}}, classes={"mine": Mine})
        report = router.exercise()          # a payment, then the same delivery once more
        report.assert_done("mine")
        assert report.deliveries["mine"].replays == 1

Fixtures: ``arrears_router`` (starts routers), ``arrears_merchant`` (the merchant they
accept, with fresh keys), ``arrears_notifier`` (builds that merchant's notifications).

Types, for annotating tests (as pytest exports ``Pytester``):

- :class:`RouterFactory` — what the ``arrears_router`` fixture returns: call it with the
  ``[plugins.NAME]`` tables to start a router.
- :class:`TestRouter` — a running router: ``send``, ``pay``, ``exercise``, ``redeliver``,
  ``settle``, ``deliveries``, ``set_mode``, its ``config`` and ``config_path``.
- :class:`Report` — what became of one payment: WeChat's reply and each plugin's delivery,
  with ``assert_done``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest

from arrears_router.config import MerchantConfig, parse_config
from arrears_router.store import DeliveryRecord, DeliveryStatus, Mode
from arrears_router.wire.envelope import Reply
from arrears_router.wire.notifier import Notifier, sample_payload
from arrears_router.wire.signature import SignType

if TYPE_CHECKING:
    from arrears_router.platform.runtime import Router

__all__ = ["Report", "RouterFactory", "TestRouter"]

T = TypeVar("T")

# Retries a test can wait for: the first after about 50 ms rather than seconds.
FAST_RETRIES = {"backoff": 0.05, "backoff_cap": 0.2}
POLL_S = 0.02
"""How often ``settle`` looks at deliveries that are due."""


@dataclass
class Report:
    """What became of one payment: the reply WeChat got and each plugin's delivery."""

    transaction_id: str
    reply: Reply
    deliveries: dict[str, DeliveryRecord] = field(default_factory=dict)

    def assert_done(self, *plugins: str) -> None:
        """Every named plugin's delivery (all, if none is named) is done."""
        for name in plugins or tuple(self.deliveries):
            delivery = self.deliveries.get(name)
            assert delivery is not None, f"no delivery for plugin {name!r}"
            assert delivery.status is DeliveryStatus.DONE, (
                f"{name}: {delivery.status} after {delivery.attempt} attempt(s): "
                f"{delivery.last_error}"
            )


class _Started:
    """A router the kit has started: the app's lifespan has nothing left to start or stop."""

    def __init__(self, router: Router) -> None:
        self._router = router

    async def receive(self, body: bytes) -> bytes:
        return await self._router.receive(body)

    async def ping(self) -> None:
        await self._router.ping()

    def running(self) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()


class TestRouter:
    """A running router, driven from synchronous test code."""

    __test__ = False  # not a test class, whatever its name says to pytest

    def __init__(self, config_text: str, base_dir: Path, merchant: MerchantConfig,
                 classes: Mapping[str, type], autoload: bool) -> None:
        self.config_path = base_dir / "config.toml"
        """The router's config on disk, for running ``arrears-router`` commands against it."""
        self.config_path.write_text(config_text, encoding="utf-8")
        self.config = parse_config(config_text, base_dir)
        self.notifier = Notifier(merchant)
        self._classes = classes
        self._autoload = autoload
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="arrears-router", daemon=True)
        self.url = ""

    # -- lifecycle, on the router's own thread and event loop

    def start(self) -> TestRouter:
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure
        return self

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        from arrears_router.platform.runtime import Router
        from arrears_router.serve.app import create_app
        from arrears_router.serve.server import AnnouncingServer, bind

        self.router = Router(self.config, plugin_classes=self._classes, autoload=self._autoload)
        self._loop = asyncio.get_running_loop()
        # Started here rather than by the app's lifespan, which would log a plugin's failure
        # to start and exit: the test gets that failure itself.
        async with self.router.running():
            sock = bind("127.0.0.1", 0)
            port = sock.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}{self.config.server.callback_path}"
            self._server = AnnouncingServer(create_app(_Started(self.router), self.config.server),
                                             self._ready.set)
            await self._server.serve(sockets=[sock])

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- driving it

    def send(self, payload: Mapping[str, Any] | bytes) -> Reply:
        """POST a signed, encrypted notification, as WeChat does; the router's reply."""
        import httpx
        import msgspec

        response = httpx.post(self.url, content=self.notifier.notification(payload), timeout=10)
        return msgspec.json.decode(response.content, type=Reply)

    def deliveries(self, transaction_id: str) -> dict[str, DeliveryRecord]:
        """This payment's deliveries, by plugin."""
        records = self._run(self.router.store.deliveries_by_transaction(transaction_id))
        return {d.plugin: d for d in records}

    def settle(self, transaction_id: str, timeout: float = 30) -> dict[str, DeliveryRecord]:
        """Wait until every delivery of this payment is done, dead or held, and return them.

        Held: its plugin is paused or disabled, or a plugin it runs after is dead or held.
        A delivery waiting for a retry is waited for, however late it is due: ``timeout``
        counts from the time it is due, so the test fails only when a due delivery has not
        run within ``timeout`` seconds of its time.
        """
        deadline = time.monotonic() + timeout
        while True:
            deliveries = self.deliveries(transaction_id)
            waiting = self._waiting(deliveries)
            if not waiting:
                return deliveries
            due_in = min(d.next_at.timestamp() for d in waiting) - time.time()
            last_due_in = max(d.next_at.timestamp() for d in waiting) - time.time()
            deadline = max(deadline, time.monotonic() + last_due_in + timeout)
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"deliveries not run within {timeout} s of their time: {waiting}")
            # Look again soon while one is due; otherwise once the first retry is.
            time.sleep(max(0.0, min(max(due_in, POLL_S), deadline - time.monotonic())))

    def _waiting(self, deliveries: Mapping[str, DeliveryRecord]) -> list[DeliveryRecord]:
        """The deliveries the dispatcher will still run, now or at their next attempt time."""
        pending = [d for d in deliveries.values() if d.status is DeliveryStatus.PENDING]
        if not pending:
            return []
        modes = {s.name: s.mode for s in self._run(self.router.store.plugin_states())}
        plugins = self.router.registry.plugins

        def runs(delivery: DeliveryRecord) -> bool:
            if delivery.status is not DeliveryStatus.PENDING:
                return False
            if modes.get(delivery.plugin) is not Mode.ENABLED:
                return False
            plugin = plugins.get(delivery.plugin)
            return all(deliveries[name].status is DeliveryStatus.DONE or runs(deliveries[name])
                       for name in (plugin.policy.after if plugin else ()) if name in deliveries)

        return [d for d in pending if runs(d)]

    def pay(self, **fields: Any) -> Report:
        """Send one payment (``fields`` override the sample payment's) and wait it out."""
        transaction_id = fields.pop("transaction_id", f"4200{secrets.randbelow(10**24):024d}")
        reply = self.send(sample_payload(transaction_id, **fields))
        return Report(transaction_id, reply, self.settle(transaction_id))

    def redeliver(self, report: Report) -> Report:
        """Run every done delivery of the payment once more: the duplicate delivery that a
        crash between a plugin's effect and its record would cause. Same idempotency key.
        """
        for delivery in report.deliveries.values():
            self._run(self.router.store.replay(delivery_id=delivery.id))
        if self.router.dispatcher is not None:
            self._loop.call_soon_threadsafe(self.router.dispatcher.wake)
        return Report(report.transaction_id, report.reply, self.settle(report.transaction_id))

    def exercise(self, **fields: Any) -> Report:
        """A payment through every plugin, then a duplicate delivery of it."""
        return self.redeliver(self.pay(**fields))

    def set_mode(self, plugin: str, mode: Mode | str) -> None:
        self._run(self.router.store.set_mode(plugin, Mode(mode), "testkit"))


def toml_text(document: Mapping[str, Any]) -> str:
    """``document`` as TOML: a mapping is a table, a list of mappings an array of tables."""
    return "\n".join(_toml_table(document, ())).strip() + "\n"


def _toml_table(table: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    lines = [f"{_toml_key(key)} = {_toml_value(value)}"
             for key, value in table.items() if not _is_table(value)]
    for key, value in table.items():
        name = ".".join(_toml_key(part) for part in (*path, key))
        if isinstance(value, Mapping):
            # A table holding only tables needs no header of its own: theirs imply it.
            implied = bool(value) and all(map(_is_table, value.values()))
            lines += [*([] if implied else ["", f"[{name}]"]), *_toml_table(value, (*path, key))]
        elif _is_table(value):
            for item in value:
                lines += ["", f"[[{name}]]", *_toml_table(item, (*path, key))]
    return lines


def _is_table(value: Any) -> bool:
    """A table or an array of tables, rather than a value."""
    return isinstance(value, Mapping) or (
        isinstance(value, list | tuple) and bool(value)
        and all(isinstance(item, Mapping) for item in value))


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        pairs = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str | int | float):
        return json.dumps(value)  # a JSON string or number is valid TOML
    raise TypeError(f"no TOML for {value!r}")


def config_text(merchant: MerchantConfig, plugins: Mapping[str, Mapping[str, Any]]) -> str:
    """A config.toml for ``merchant`` and ``plugins`` (tables of settings), fast retries."""
    merchant_keys = ("appid", "mch_id", "sign_key", "aes_key", "sign_types")
    return toml_text({
        "store": {"url": "sqlite:///router.db"},
        "merchants": [{key: getattr(merchant, key) for key in merchant_keys}],
        # Fast retries unless the test set its own (a test of Retry-After sets a long one).
        "plugins": {name: {**({} if "backoff" in settings else FAST_RETRIES), **settings}
                    for name, settings in plugins.items()},
    })


@pytest.fixture
def arrears_merchant() -> MerchantConfig:
    """A merchant with fresh random keys, accepting both sign types."""
    return MerchantConfig(
        appid="wxtestkit0000001", mch_id="1900000109", sign_key=secrets.token_hex(16),
        aes_key="hex:" + secrets.token_hex(32),
        sign_types=(SignType.HMAC_SHA256, SignType.MD5),
    )


@pytest.fixture
def arrears_notifier(arrears_merchant: MerchantConfig) -> Notifier:
    """Builds notification bodies for ``arrears_merchant``, signed and encrypted."""
    return Notifier(arrears_merchant)


class RouterFactory(Protocol):
    """What the ``arrears_router`` fixture returns: starts a router, stopped after the test."""

    def __call__(
        self, plugins: Mapping[str, Mapping[str, Any]], *,
        classes: Mapping[str, type] | None = None, autoload: bool = False,
    ) -> TestRouter:
        """Start a router with these plugins, and return it once it is listening.

        :param plugins: plugin names to their ``[plugins.NAME]`` tables. Retries come fast
            (``backoff`` 0.05 s, capped at 0.2 s) unless a table sets its own ``backoff``.
        :param classes: plugin classes by name, for plugins not otherwise discoverable.
        :param autoload: also find the built-ins and installed packages.
        """
        ...


@pytest.fixture
def arrears_router(tmp_path: Path, arrears_merchant: MerchantConfig) -> Iterator[RouterFactory]:
    """Start a router: ``arrears_router(plugins, classes=None, autoload=False)``, a
    :class:`RouterFactory`. Every router started is stopped at the end of the test.
    """
    started: list[TestRouter] = []

    def start(
        plugins: Mapping[str, Mapping[str, Any]], *,
        classes: Mapping[str, type] | None = None, autoload: bool = False,
    ) -> TestRouter:
        text = config_text(arrears_merchant, plugins)
        router = TestRouter(text, tmp_path, arrears_merchant, classes or {}, autoload)
        started.append(router)
        return router.start()

    yield start
    for router in started:
        router.stop()
