"""The plugin contract: every hook a plugin may implement, with what it receives and returns.

A plugin is a class with a ``name``, a msgspec ``Settings`` struct and ``@hookimpl`` methods;
each hook may be sync or ``async``. As with pluggy generally, an implementation may accept
only the arguments it needs — but give none of them a default value: pluggy silently does not
pass a parameter that has one.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import pluggy

from arrears_router.commands import Commands
from arrears_router.delivery import Delivery
from arrears_router.payment import ArrearsPayment

if TYPE_CHECKING:
    # The report's public name, for its annotation only: its module (reconcile) sits above
    # this contract's layer, and the package's face imports this module.
    import arrears_router

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "arrears_router"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def arrears_paid(payment: ArrearsPayment, delivery: Delivery) -> str | Awaitable[str | None] | None:
    """Act on a payment the router has durably accepted: the main hook.

    Called once per payment for this plugin, and again on a retry, a replay or after a crash
    (delivery is at least once): make the effect idempotent on ``delivery.idempotency_key``,
    or, where the far side cannot dedupe on it, wrap it in ``delivery.once()``.
    Only this plugin's implementation is called; other plugins never see its failures.

    :param payment: the payment, every field of the notification; amounts in fen.
    :param delivery: this attempt: plugin name, attempt number, idempotency key, the
        plugin's settings and a logger.
    :return: ``None``, or a short note kept with the delivery (e.g. ``"skipped: no phone"``).
    :raises RetryableError: to be tried again (after ``retry_after`` seconds if given).
        Any exception other than PermanentError is treated the same way.
    :raises PermanentError: retrying cannot help; the delivery is dead at once.
    """


@hookspec
def router_started(store_url: str) -> Awaitable[None] | None:
    """The router or worker has started and is about to deliver: open clients, pools, files.

    Awaited before the first delivery. An exception stops the start-up, naming the plugin.

    :param store_url: the router's store (``sqlite:////path.db``, later ``postgresql://...``).
        A plugin that keeps books there opens its own connection and owns tables named
        after itself; its writes share nothing else with the router's.
    """


@hookspec
def router_stopping() -> Awaitable[None] | None:
    """The router or worker is stopping, after its last delivery: close what started opened.

    Awaited; an exception is logged and does not stop the other plugins from closing.
    """


@hookspec
def payment_flagged(
    payment: ArrearsPayment, delivery: Delivery, reason: str
) -> Awaitable[None] | None:
    """A plugin flagged a payment for a person to look at, with ``delivery.flag(reason)``.

    Called on every plugin that implements it, once the flagging delivery is done. For
    alerting; an exception is logged and not retried.

    :param payment: the payment flagged.
    :param delivery: the delivery that flagged it; its ``plugin`` names which plugin.
    :param reason: what the person should look at, e.g. an overpaid repay_no.
    """


@hookspec
def delivery_dead(
    payment: ArrearsPayment, delivery: Delivery, error: str
) -> Awaitable[None] | None:
    """A delivery gave up (attempts exhausted, or a PermanentError): alert someone.

    Called on every plugin that implements it, for any plugin's dead delivery. The delivery
    waits for ``arrears-router replay``. An exception here is logged and not retried.

    :param payment: the payment the dead delivery was for.
    :param delivery: the dead delivery; its ``plugin`` names whose it was.
    :param error: why the last attempt failed.
    """


@hookspec
def reconciled(report: arrears_router.ReconcileReport) -> Awaitable[None] | None:
    """``arrears-router reconcile`` compared WeChat's trade bill of a merchant's day with the
    payments stored, and kept the report: alert someone, open a ticket.

    Called on every configured plugin that implements it, once per report, by the command,
    after ``router_started`` (and before ``router_stopping``) in the command's own process.
    An exception is logged and does not change the command's exit status.

    :param report: a ``ReconcileReport``: ``ok``, ``counts``, and the ``missing``,
        ``unexpected``, ``amount_differs`` and ``other_trades`` lines; ``id`` is its number
        in ``arrears-router reconcile history``.
    """


@hookspec
def register_commands(commands: Commands) -> None:
    """Add commands to ``arrears-router`` (``arrears-router ledger balance``, say).

    Unlike the other hooks, this one is a function of the module that defines the plugin
    class, not a method: commands exist before any config is read. It is called for every
    built-in and installed plugin, configured or not. A plugin whose module cannot be imported,
    or whose hook raises, is reported and left out; every other command still works.

    :param commands: ``commands.add(name, help, handler, json=False)`` returns the command's
        ``argparse`` parser (``--config`` is already on it); ``commands.group(parser)`` gives
        a group's actions. ``handler(args)`` runs the command.
    """
