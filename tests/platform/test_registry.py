"""Loading plugins from config: discovery, validation, and refusals that name the key."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

from arrears_router import ConfigError, hookimpl
from arrears_router.platform.registry import PluginPolicy, Registry, RegistryError
from arrears_router.store import Mode
from tests.sample_plugins import DeadLetters, Recorder

CLASSES: dict[str, type] = {"rec": Recorder, "other": Recorder, "alerts": DeadLetters}


def load(config: dict[str, dict[str, Any]]) -> Registry:
    return Registry.load(config, autoload=False, classes=CLASSES)


def test_router_keys_and_plugin_settings_are_split() -> None:
    registry = load({"rec": {"path": "/tmp/x", "mode": "paused", "timeout": 2, "max_attempts": 3}})
    plugin = registry.plugins["rec"]
    assert plugin.policy == PluginPolicy(mode=Mode.PAUSED, timeout=2, max_attempts=3)
    assert plugin.settings == Recorder.Settings(path="/tmp/x")
    assert isinstance(plugin.instance, Recorder)


def test_a_module_class_path_in_config() -> None:
    registry = Registry.load(
        {"mine": {"use": "tests.sample_plugins:Recorder", "path": "/tmp/x"}}, autoload=False
    )
    assert isinstance(registry.plugins["mine"].instance, Recorder)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"nope": {}}, "plugins.nope: unknown plugin (known: alerts, other, rec)"),
        ({"rec": {}}, "plugins.rec.path: required key is missing"),
        ({"rec": {"path": 1}}, "plugins.rec.path: Expected `str`, got `int`"),
        ({"rec": {"path": "x", "colour": "red"}}, "plugins.rec.colour: unknown key"),
        ({"rec": {"path": "x", "mode": "on"}}, "plugins.rec.mode: Invalid enum value 'on'"),
        ({"rec": {"path": "x", "timeout": 0}}, "plugins.rec.timeout: Expected `float` > 0.0"),
        ({"rec": {"path": "x", "after": ["ghost"]}},
         "plugins.rec.after: 'ghost' is not a configured plugin"),
        ({"rec": {"path": "x", "after": ["other"]}, "other": {"path": "x", "after": ["rec"]}},
         "plugins.rec.after: a cycle: rec -> other -> rec"),
        ({"x": {"use": "tests.sample_plugins:Nothing"}}, "plugins.x.use: cannot import"),
        ({"x": {"use": "no_such_module:Thing"}}, "plugins.x.use: cannot import"),
    ],
)
def test_bad_plugin_config_names_the_key(config: dict[str, dict[str, Any]], message: str) -> None:
    with pytest.raises(RegistryError) as caught:
        load(config)
    assert message in str(caught.value)


class Misspelt:
    @hookimpl
    def arrears_payed(self, payment: object) -> None: ...


class WrongArgument:
    @hookimpl
    def arrears_paid(self, payment: object, rider: object) -> None: ...


class Defaulted:
    @hookimpl
    def arrears_paid(self, payment: object, delivery: object = None) -> None: ...


class Exploding:
    class Settings(msgspec.Struct):
        pass

    def __init__(self, settings: object) -> None:
        raise ValueError("no database")


@pytest.mark.parametrize(
    ("plugin_class", "message"),
    [
        (Misspelt, "unknown hook 'arrears_payed'"),
        (WrongArgument, "rider"),
        (Exploding, "plugins.bad: the plugin failed to build: ValueError('no database')"),
    ],
)
def test_broken_plugins_are_refused_at_load(plugin_class: type, message: str) -> None:
    with pytest.raises(RegistryError, match="plugins") as caught:
        Registry.load({"bad": {}}, autoload=False, classes={"bad": plugin_class})
    assert message in str(caught.value)


def test_a_hook_parameter_with_a_default_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "arrears_router.registry"):
        Registry.load({"d": {}}, autoload=False, classes={"d": Defaulted})
    assert "arrears_paid's parameters with defaults (delivery) are never passed" in caplog.text


def test_a_plugin_without_settings_refuses_any() -> None:
    with pytest.raises(RegistryError, match=r"plugins\.d\.x: this plugin takes no settings"):
        Registry.load({"d": {"x": 1}}, autoload=False, classes={"d": Misspelt})


def test_installed_plugins_load_only_when_configured() -> None:
    assert Registry.load({}).plugins == {}


class SelfChecking:
    class Settings(msgspec.Struct):
        url: str = ""
        request_timeout: float = 5.0

    def __init__(self, settings: Settings) -> None:
        if not settings.url.startswith("http"):
            raise ConfigError("url: must start with http:// or https://")


def test_a_plugin_may_refuse_its_settings_naming_the_key() -> None:
    with pytest.raises(RegistryError, match=r"^plugins\.s\.url: must start with http"):
        Registry.load({"s": {"url": "ftp://x"}}, autoload=False, classes={"s": SelfChecking})


def test_a_request_timeout_the_router_would_cut_short_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "arrears_router.registry"):
        Registry.load({"s": {"url": "http://x", "request_timeout": 12, "timeout": 10}},
                      autoload=False, classes={"s": SelfChecking})
    assert "plugins.s.request_timeout (12 s) is not below its timeout (10 s)" in caplog.text
