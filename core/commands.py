"""How commands are added to ``arrears-router``: by the router itself, and by plugins through
their ``register_commands`` hook (``arrears-router ledger ...``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["Commands"]

Handler = Callable[[argparse.Namespace], None]


class Commands:
    """Declares commands under ``arrears-router``: each gets ``--config``, and ``--json`` if
    asked, and runs its handler with the parsed arguments.

    Plugins receive one in their ``register_commands`` hook.
    """

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self._config = argparse.ArgumentParser(add_help=False)
        self._config.add_argument(
            "--config", metavar="PATH", default=argparse.SUPPRESS,
            help="config file (default: $ARREARS_ROUTER_CONFIG, else ./config.toml)",
        )
        self._json = argparse.ArgumentParser(add_help=False)
        self._json.add_argument("--json", action="store_true", help="one JSON object per line")

    def add(self, name: str, help: str, handler: Handler | None = None, *,
            json: bool = False) -> argparse.ArgumentParser:
        """A command (``handler`` runs it), or a group when ``handler`` is None: add its
        actions with :meth:`group`."""
        parents = [self._config, self._json] if json else [self._config]
        parser: argparse.ArgumentParser = self._subparsers.add_parser(
            name, help=help, description=help, parents=parents)
        if handler is not None:
            parser.set_defaults(handler=handler)
        return parser

    def group(self, parser: argparse.ArgumentParser) -> Commands:
        """The actions of a command group (``plugins list``, ``plugins pause``...)."""
        return type(self)(parser.add_subparsers(dest="action", required=True, metavar="ACTION"))
