"""``deliveries`` and ``replay``: each plugin's work on each payment, and running it again."""

from __future__ import annotations

import argparse

from arrears_router.cli.common import (
    Commands,
    moment,
    pretty_json,
    print_json,
    print_records,
    with_store,
)
from arrears_router.store import DeliveryRecord, DeliveryStatus

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    deliveries = commands.group(commands.add("deliveries", "each plugin's work on each payment"))
    listing = deliveries.add("list", "newest first", cmd_deliveries_list, json=True)
    listing.add_argument("--plugin")
    listing.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    listing.add_argument("--limit", type=int, default=50)
    show = deliveries.add("show", "one delivery", cmd_deliveries_show, json=True)
    show.add_argument("id", type=int)

    replay = commands.add("replay", "run dead deliveries again (or one delivery, dead or done)",
                          cmd_replay)
    replay.add_argument("--delivery", type=int, metavar="ID")
    replay.add_argument("--plugin", metavar="NAME", help="every dead delivery of this plugin")
    replay.add_argument("--since", type=moment, metavar="TIME",
                        help="dead deliveries created at or after (ISO 8601 with a zone:"
                             " 2026-11-25T09:00+08:00)")
    replay.add_argument("--until", type=moment, metavar="TIME", help="... and before")


def cmd_deliveries_list(args: argparse.Namespace) -> None:
    status = DeliveryStatus(args.status) if args.status else None
    records: list[DeliveryRecord] = with_store(
        args, lambda s: s.deliveries(plugin=args.plugin, status=status, limit=args.limit)
    )
    print_records(
        args, records,
        f"{'id':>8}  {'plugin':<16} {'status':<8} {'tries':>5}  {'transaction_id':<32}"
        "  note/error",
        lambda d: f"{d.id:>8}  {d.plugin:<16} {d.status:<8} {d.attempt:>5}"
                  f"  {d.transaction_id:<32}  {d.note or d.last_error}",
    )


def cmd_deliveries_show(args: argparse.Namespace) -> None:
    record: DeliveryRecord | None = with_store(args, lambda s: s.delivery(args.id))
    if record is None:
        raise SystemExit(f"no delivery {args.id}")
    if args.json:
        print_json(record)
    else:
        print(pretty_json(record))


def cmd_replay(args: argparse.Namespace) -> None:
    if args.delivery is None and args.plugin is None and args.since is None:
        raise SystemExit("replay: say what: --delivery ID, or --plugin NAME and/or --since/--until")
    count: int = with_store(args, lambda s: s.replay(
        delivery_id=args.delivery, plugin=args.plugin, since=args.since, until=args.until,
    ), write=True)
    print(f"{count} deliver{'y' if count == 1 else 'ies'} due again")
