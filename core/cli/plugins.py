"""``plugins``: each plugin's mode and backlog, the audit log, and live mode changes."""

from __future__ import annotations

import argparse

from arrears_router.cli.common import (
    Commands,
    default_actor,
    print_json,
    print_records,
    shown,
    with_store,
)
from arrears_router.store import Mode, ModeChange, PluginState

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    plugins = commands.group(commands.add("plugins", "plugins and their modes"))
    plugins.add("list", "modes and deliveries by status", cmd_plugins_list, json=True)
    history = plugins.add("history", "the audit log of mode changes", cmd_plugins_history,
                          json=True)
    history.add_argument("--limit", type=int, default=50)
    for verb, mode in (("enable", Mode.ENABLED), ("pause", Mode.PAUSED),
                       ("disable", Mode.DISABLED)):
        change = plugins.add(verb, f"set a plugin's mode to {mode}, live", cmd_plugins_set_mode)
        change.add_argument("name")
        change.add_argument("--by", default=default_actor(), help="who, for the audit log")
        change.set_defaults(mode=mode)


def cmd_plugins_list(args: argparse.Namespace) -> None:
    states: list[PluginState] = with_store(args, lambda s: s.plugin_states())
    print_records(
        args, states, f"{'plugin':<20} {'mode':<9} {'pending':>8} {'done':>8} {'dead':>6}",
        lambda s: f"{s.name:<20} {s.mode:<9} {s.pending:>8} {s.done:>8} {s.dead:>6}"
                  + ("" if s.configured else "  (not in the config)"),
    )


def cmd_plugins_history(args: argparse.Namespace) -> None:
    changes: list[ModeChange] = with_store(args, lambda s: s.mode_changes(limit=args.limit))
    for change in changes:
        if args.json:
            print_json(change)
        else:
            print(f"{shown(change.at)}  {change.plugin:<20} "
                  f"{change.from_mode or '-':<9} -> {change.to_mode:<9} by {change.actor}")


def cmd_plugins_set_mode(args: argparse.Namespace) -> None:
    mode: Mode = args.mode
    previous: Mode = with_store(args, lambda s: s.set_mode(args.name, mode, args.by), write=True)
    print(f"{args.name}: {previous} -> {mode}")
