"""A test kit for plugin authors, loaded by pytest through the ``pytest11`` entry point.

It runs a real router in the test's process — real HTTP on a free port, a real SQLite store
in the test's temporary folder, the real dispatcher — and sends it notifications signed and
encrypted as WeChat would. Fixtures only, nothing autouse; the router starts when asked.

    def test_my_plugin(arrears_router):
        router = arrears_router({"mine": {"url": "http://127.0.0.1:9/"}}, classes={"mine": Mine})
        report = router.exercise()          # a payment, then the same delivery once more
        report.assert_done("mine")
        assert report.deliveries["mine"].replays == 1
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from arrears_router.config import MerchantConfig, parse_config
from arrears_router.store import DeliveryRecord, DeliveryStatus, Mode
from arrears_router.wire.envelope import Reply
from arrears_router.wire.notifier import Notifier, sample_payload
from arrears_router.wire.signature import SignType

__all__ = ["Report", "TestRouter"]

T = TypeVar("T")

# Retries a test can wait for: the first after about 50 ms rather than seconds.
FAST_RETRIES = {"backoff": 0.05, "backoff_cap": 0.2}


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
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}{self.config.server.callback_path}"
        self._server = AnnouncingServer(create_app(self.router, self.config.server),
                                         self._ready.set)
        await self._server.serve(sockets=[sock])
        if not self._server.started:
            raise RuntimeError("the router did not start; see the log above")

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
        records = self._run(self.router.store.deliveries(limit=1_000_000))
        return {d.plugin: d for d in records if d.transaction_id == transaction_id}

    def settle(self, transaction_id: str, timeout: float = 30) -> dict[str, DeliveryRecord]:
        """Wait until no delivery of this payment is due to run again soon, and return them.

        A delivery held by a paused plugin or a dead predecessor counts as settled.
        """
        deadline = time.monotonic() + timeout
        while True:
            deliveries = self.deliveries(transaction_id)
            modes = {s.name: s.mode for s in self._run(self.router.store.plugin_states())}
            if not any(self._runnable(d, modes, deliveries) for d in deliveries.values()):
                return deliveries
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries not settled in {timeout} s: {deliveries}")
            time.sleep(0.02)

    def _runnable(self, delivery: DeliveryRecord, modes: Mapping[str, Mode],
                  siblings: Mapping[str, DeliveryRecord]) -> bool:
        if delivery.status is not DeliveryStatus.PENDING:
            return False
        if modes.get(delivery.plugin) != Mode.ENABLED:
            return False
        plugin = self.router.registry.plugins.get(delivery.plugin)
        after = plugin.policy.after if plugin else ()
        return not any(
            siblings[name].status is DeliveryStatus.DEAD for name in after if name in siblings
        )

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


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def config_text(merchant: MerchantConfig, plugins: Mapping[str, Mapping[str, Any]]) -> str:
    """A config.toml for ``merchant`` and ``plugins`` (tables of settings), fast retries."""
    lines = [
        '[store]\nurl = "sqlite:///router.db"\n',
        "[[merchants]]",
        *(f"{key} = {_toml_value(getattr(merchant, key))}"
          for key in ("appid", "mch_id", "sign_key", "aes_key", "sign_types")),
    ]
    for name, settings in plugins.items():
        lines.append(f"\n[plugins.{name}]")
        # Fast retries unless the test set its own (a test of Retry-After sets a long one).
        table = {**({} if "backoff" in settings else FAST_RETRIES), **settings}
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


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


@pytest.fixture
def arrears_router(
    tmp_path: Path, arrears_merchant: MerchantConfig
) -> Iterator[Callable[..., TestRouter]]:
    """Start a router: ``arrears_router(plugins, classes=None, autoload=False)``.

    ``plugins`` maps plugin names to their ``[plugins.NAME]`` tables; ``classes`` maps names
    to plugin classes not otherwise discoverable; ``autoload`` also finds the built-ins and
    installed packages. Retries come fast (``backoff`` 0.05 s, capped at 0.2 s) unless a
    table sets its own ``backoff``.
    Every router started is stopped at the end of the test.
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
