"""The ``arrears-router`` command: a module per command group, and the plugins' own commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib.metadata import version

from arrears_router.cli import (
    bench,
    deliveries,
    events,
    migrate,
    plugins,
    reconcile,
    serve,
    simulate,
    verify,
)
from arrears_router.cli.common import Commands
from arrears_router.config import ConfigError
from arrears_router.logs import configure_logging
from arrears_router.platform.registry import command_hooks

__all__ = ["build_parser", "main"]

log = logging.getLogger("arrears_router.cli")
GROUPS = (serve, migrate, simulate, verify, events, plugins, deliveries, reconcile, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arrears-router",
        description="Receive WeChat ride-code arrears-payment notifications and fan them out.",
    )
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {version('arrears-router')}")
    parser.set_defaults(config=None)
    commands = Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for group in GROUPS:
        group.add_commands(commands)
    _add_plugin_commands(commands)
    return parser


def _add_plugin_commands(commands: Commands) -> None:
    """Commands a plugin adds (``arrears-router ledger ...``) through ``register_commands``.
    A plugin package that cannot load, or whose hook fails, is reported and left out: it must
    never take ``serve`` or any other command down with it."""
    hooks, broken = command_hooks()
    for error in broken.values():
        log.warning("%s; its commands are left out", error)
    for plugin, register_commands in hooks.items():
        try:
            register_commands(commands=commands)
        except Exception as exc:
            log.warning("plugin %s: register_commands failed, its commands are left out: %r",
                        plugin, exc)


def main(argv: Sequence[str] | None = None) -> None:
    configure_logging()
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None
    except BrokenPipeError:  # `| head` stopped reading: not an error of ours
        # Python flushes stdout again at exit: point it at nothing so that raises no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(141) from None
