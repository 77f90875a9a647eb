"""``deliveries`` and ``replay``: each plugin's work on each payment, and running it again."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from arrears_router.cli.common import (
    Commands,
    default_actor,
    moment,
    print_json,
    print_records,
    shown,
    with_store,
)
from arrears_router.delivery import EffectRecord, idempotency_key
from arrears_router.store import DeliveryRecord, DeliveryStatus, Store

__all__ = ["DELIVERIES_HEADER", "add_commands", "delivery_line", "field_lines"]


def add_commands(commands: Commands) -> None:
    deliveries = commands.group(commands.add("deliveries", "each plugin's work on each payment"))
    listing = deliveries.add("list", "newest first", cmd_deliveries_list, json=True)
    listing.add_argument("--plugin")
    listing.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    listing.add_argument("--transaction-id", metavar="T",
                         help="the deliveries of the payment(s) with this transaction_id")
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
    replay.add_argument("--by", default=default_actor(), help="who, for the audit log")


def field_lines(values: Mapping[str, Any], indent: str = "  ") -> list[str]:
    """A record's fields, a line each, for a person: times as :func:`shown`, empty as ``-``,
    what has parts of its own (lists, orders) as compact JSON."""
    width = max(map(len, values))
    return [f"{indent}{name:<{width}}  {_text(value)}" for name, value in values.items()]


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return shown(value)
    if value is None or value == "":
        return "-"
    if isinstance(value, str | int | float):
        return str(value)
    return msgspec.json.encode(value).decode()


DELIVERIES_HEADER = (f"{'id':>8}  {'plugin':<16} {'status':<8} {'tries':>5}  {'updated':<25}"
                     f"  {'transaction_id':<32}  note/error")


def delivery_line(d: DeliveryRecord) -> str:
    return (f"{d.id:>8}  {d.plugin:<16} {d.status:<8} {d.attempt:>5}  {shown(d.updated_at):<25}"
            f"  {d.transaction_id:<32}  {d.note or d.last_error}")


def cmd_deliveries_list(args: argparse.Namespace) -> None:
    status = DeliveryStatus(args.status) if args.status else None

    async def listed(store: Store) -> list[DeliveryRecord]:
        if args.transaction_id is None:
            return await store.deliveries(plugin=args.plugin, status=status, limit=args.limit)
        # A payment has a delivery per plugin: few enough to filter here.
        found = await store.deliveries_by_transaction(args.transaction_id)
        return [d for d in reversed(found)
                if args.plugin in (None, d.plugin) and status in (None, d.status)][:args.limit]

    records: Sequence[DeliveryRecord] = with_store(args, listed)
    print_records(args, records, DELIVERIES_HEADER, delivery_line)


async def _with_effect(store: Store, delivery_id: int
                       ) -> tuple[DeliveryRecord, EffectRecord | None] | None:
    """The delivery, and its effect if its plugin records one (``Delivery.once``)."""
    record = await store.delivery(delivery_id)
    if record is None:
        return None
    key = idempotency_key(record.mch_id, record.transaction_id, record.plugin)
    return record, await store.effect(key)


_TRACEBACKS = ("last_traceback", "traceback_before_done")
"""Fields of many lines: shown under the others, each as a block."""


def cmd_deliveries_show(args: argparse.Namespace) -> None:
    found = with_store(args, lambda s: _with_effect(s, args.id))
    if found is None:
        raise SystemExit(f"no delivery {args.id}")
    record, effect = found
    fields = msgspec.structs.asdict(record)
    if args.json:
        print_json({**fields, "effect": effect})
        return
    print(f"delivery {record.id}")
    lines = {name: value for name, value in fields.items() if name not in _TRACEBACKS}
    print("\n".join(field_lines({**lines, "effect": _effect_text(effect)})))
    for name in _TRACEBACKS:
        if fields[name]:
            print(f"  {name}:\n" + textwrap.indent(fields[name], "    "))


def _effect_text(effect: EffectRecord | None) -> str | None:
    if effect is None:
        return None
    if effect.done_at is None:
        return (f"begun {shown(effect.begun_at)}, not recorded done: in flight, or its"
                " outcome unknown")
    return f"done {shown(effect.done_at)} (begun {shown(effect.begun_at)})"


def cmd_replay(args: argparse.Namespace) -> None:
    if args.delivery is None and args.plugin is None and args.since is None:
        raise SystemExit("replay: say what: --delivery ID, or --plugin NAME and/or --since/--until")
    count: int = with_store(args, lambda s: s.replay(
        delivery_id=args.delivery, plugin=args.plugin, since=args.since, until=args.until,
        actor=args.by,
    ), write=True)
    print(f"{count} deliver{'y' if count == 1 else 'ies'} due again")
