"""What every command shares: its config, its store, its output, and how it is declared."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from arrears_router.commands import Commands
from arrears_router.config import Config, ConfigError, config_path, load_config
from arrears_router.payment import CST
from arrears_router.store import Store, StoreError, open_store

__all__ = [
    "Commands",
    "default_actor",
    "load",
    "moment",
    "print_json",
    "print_records",
    "shown",
    "with_store",
]

_json_line = msgspec.json.Encoder()


def shown(moment: datetime) -> str:
    """A stored time as every command prints it: CST, its offset written out."""
    return moment.astimezone(CST).isoformat(sep=" ", timespec="seconds")


def moment(text: str) -> datetime:
    """An ISO 8601 time from the command line. Without a zone it would be a guess (CST, as
    WeChat's times are? UTC, as the store's?), so it is refused."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no zone: add one, e.g. {text}+08:00 (China Standard Time) or {text}Z")
    return parsed


def default_actor() -> str:
    """Who runs the command, for the audit log when ``--by`` does not say: user@host."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def load(args: argparse.Namespace) -> Config:
    try:
        return load_config(config_path(getattr(args, "config", None)))
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None


def with_store(
    args: argparse.Namespace, use: Callable[[Store], Awaitable[Any]], *, write: bool = False
) -> Any:
    """Run ``use`` on the config's store, opened read-only unless it must ``write``."""

    async def run() -> Any:
        store = open_store(load(args).store.url, readonly=not write)
        await store.open()
        try:
            return await use(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as exc:
        raise SystemExit(f"store error: {exc}") from None


def print_json(obj: Any) -> None:
    sys.stdout.buffer.write(_json_line.encode(obj) + b"\n")
    sys.stdout.flush()


def print_records(
    args: argparse.Namespace, records: Sequence[Any], header: str, line: Callable[[Any], str]
) -> None:
    """``--json``: one object a line; else a header and a line a record."""
    if args.json:
        for record in records:
            print_json(record)
        return
    print(header)
    for record in records:
        print(line(record))
