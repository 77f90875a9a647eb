"""What the bench's routers run: no-op plugins, or the built-ins against local sinks, and
the ``[plugins.*]`` tables of the config the bench writes for them.

The built-ins are configured as an operator would, each with its own concurrency: ``unlock``
checking a success field in the answer, ``webhook`` signing with a secret made for the run,
``sms`` through the generic HTTP provider with the phone in its static table (one call a
payment, no lookup) and its rate limit out of the way, and ``ledger`` booking into the
router's own store.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from arrears_router.bench.client import HOST
from arrears_router.bench.report import NOOP_PLUGIN
from arrears_router.store import Mode

__all__ = ["BUILTINS", "SINKS", "PluginSet", "SinkSpec", "builtin_set", "noop_set"]

BUILTINS = ("unlock", "webhook", "sms", "ledger")
RIDER = "rider-0001"
"""The ``out_user_id`` of every bench payment (``sample_payload``): sms finds its phone."""
NO_RATE_LIMIT = 1_000_000
"""sms's rate and burst: far above anything the router reaches, so no delivery waits."""


@dataclass(frozen=True)
class SinkSpec:
    """What a plugin's sink must answer, and the header each of its calls is counted by."""

    key_header: str
    reply: str
    path: str


SINKS: Mapping[str, SinkSpec] = {
    # unlock checks the answer's success field, as the docs' example configures it.
    "unlock": SinkSpec("Idempotency-Key", '{"result":{"code":0}}', "/riders/{out_user_id}/unblock"),
    "webhook": SinkSpec("webhook-id", '{"ok":true}', "/hooks/arrears"),
    # The generic provider takes any 2xx as sent.
    "sms": SinkSpec("Idempotency-Key", '{"ok":true}', "/sms/send"),
}
"""The plugins that make one outgoing HTTP call a payment, each to a sink of its own."""


@dataclass(frozen=True)
class PluginSet:
    label: str
    """How the report names it: ``3 no-op``, ``built-ins``, ``unlock``."""
    names: tuple[str, ...]
    builtin: bool
    """The built-ins (against sinks), else no-op plugins."""
    concurrency: int
    """Each plugin's calls in flight."""

    @property
    def calls(self) -> tuple[str, ...]:
        """Its plugins that call out, one call a payment each."""
        return tuple(name for name in self.names if self.builtin and name in SINKS)

    def tables(self, mode: Mode, ports: Mapping[str, int]) -> str:
        """The config's ``[plugins.*]`` tables, in ``mode``, calling the sinks at ``ports``."""
        if not self.builtin:
            return "".join(
                f'\n[plugins.{name}]\nuse = "{NOOP_PLUGIN}"\nmode = "{mode}"\n'
                f"concurrency = {self.concurrency}\n" for name in self.names)
        return "".join(
            f'\n[plugins.{name}]\nmode = "{mode}"\nconcurrency = {self.concurrency}\n'
            + _settings(name, ports) for name in self.names)


def noop_set(names: Sequence[str], concurrency: int) -> PluginSet:
    return PluginSet(f"{len(names)} no-op", tuple(names), builtin=False, concurrency=concurrency)


def builtin_set(names: Sequence[str], concurrency: int) -> PluginSet:
    label = "built-ins" if tuple(names) == BUILTINS else ", ".join(names)
    return PluginSet(label, tuple(names), builtin=True, concurrency=concurrency)


def _url(name: str, ports: Mapping[str, int]) -> str:
    # A JSON string is a TOML basic string.
    return json.dumps(f"http://{HOST}:{ports[name]}{SINKS[name].path}")


def _settings(name: str, ports: Mapping[str, int]) -> str:
    if name == "unlock":
        return f'url = {_url(name, ports)}\nsuccess_field = "result.code"\nsuccess_value = 0\n'
    if name == "webhook":
        # Made for the run, in its temporary config only: never printed.
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        return f'url = {_url(name, ports)}\nsecrets = ["{secret}"]\n'
    if name == "sms":
        return (f'phones = {{ "{RIDER}" = "+8613800000000" }}\n'
                f"rate_limit = {NO_RATE_LIMIT}\nburst = {NO_RATE_LIMIT}\n"
                f'provider = {{ type = "http", url = {_url(name, ports)} }}\n')
    if name == "ledger":
        return ""
    raise ValueError(f"not a built-in the bench knows: {name}")
