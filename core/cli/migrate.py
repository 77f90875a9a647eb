"""``migrate``: bring the store's schema up to date, or say whether it is (for deploys)."""

from __future__ import annotations

import argparse

from arrears_router.cli.common import Commands, load, with_store
from arrears_router.store import SchemaStatus, StoreError, schema_status

__all__ = ["add_commands"]

EXIT_BEHIND = 1
"""``--check``: the store needs migrating; `arrears-router migrate` or a router's start does it."""
EXIT_AHEAD = 2
"""``--check``: the store was migrated by a newer arrears-router than this one."""


def add_commands(commands: Commands) -> None:
    parser = commands.add(
        "migrate", "bring the store's schema up to date (routers also do it as they start)",
        cmd_migrate)
    parser.add_argument(
        "--check", action="store_true",
        help=f"change nothing: exit 0 if the store is current, {EXIT_BEHIND} if it needs"
             f" migrating, {EXIT_AHEAD} if a newer arrears-router migrated it")


def cmd_migrate(args: argparse.Namespace) -> None:
    url = load(args).store.url
    before = _status(url)
    if args.check:
        print(_describe(before))
        if before.found != before.known:
            raise SystemExit(EXIT_BEHIND if before.found < before.known else EXIT_AHEAD)
        return
    if before.found > before.known:
        raise SystemExit(_describe(before))
    # Opening the store for writing migrates it, under the lock every router takes.
    with_store(args, _nothing, write=True)
    after = _status(url)
    print(_describe(after) if after.found == before.found
          else f"store migrated from schema version {before.found} to {after.found}")


async def _nothing(_store: object) -> None:
    return None


def _status(url: str) -> SchemaStatus:
    try:
        return schema_status(url)
    except StoreError as exc:
        raise SystemExit(f"store error: {exc}") from None


def _describe(status: SchemaStatus) -> str:
    if status.found == status.known:
        return f"store is current (schema version {status.known})"
    if status.found < status.known:
        return (f"store needs migrating: schema version {status.found}, this arrears-router"
                f" uses {status.known}; run `arrears-router migrate`")
    return (f"store has schema version {status.found}, newer than this arrears-router's"
            f" {status.known}: upgrade arrears-router")
