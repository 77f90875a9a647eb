"""``events`` and ``quarantine``: the payments stored, and the authentic requests refused."""

from __future__ import annotations

import argparse

from arrears_router.cli.common import (
    Commands,
    pretty_json,
    print_json,
    print_records,
    shown,
    with_store,
)
from arrears_router.http import mask_openid
from arrears_router.store import EventRecord, QuarantineRecord

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    events = commands.group(commands.add("events", "stored payments"))
    listing = events.add("list", "most recent first", cmd_events_list, json=True)
    listing.add_argument("--limit", type=int, default=50)
    show = events.add("show", "one payment, whole", cmd_events_show, json=True)
    show.add_argument("transaction_id")

    quarantine = commands.group(commands.add("quarantine", "refused authentic requests"))
    q_list = quarantine.add("list", "most recent first", cmd_quarantine_list, json=True)
    q_list.add_argument("--limit", type=int, default=50)


def _event_line(record: EventRecord) -> str:
    p = record.payment
    return (f"{record.id:>8}  {shown(record.received_at)}  {p.mch_id:<12}"
            f"  {p.transaction_id:<32}  {p.total_fee / 100:>9.2f}  {p.repay_no:<24}"
            f"  {mask_openid(p.openid)}")


def cmd_events_list(args: argparse.Namespace) -> None:
    records: list[EventRecord] = with_store(args, lambda s: s.events(limit=args.limit))
    print_records(args, records,
                  f"{'id':>8}  {'received':<25}  {'mch_id':<12}  {'transaction_id':<32}"
                  f"  {'yuan':>9}  {'repay_no':<24}  openid", _event_line)


def cmd_events_show(args: argparse.Namespace) -> None:
    records: list[EventRecord] = with_store(
        args, lambda s: s.events_by_transaction(args.transaction_id)
    )
    if not records:
        raise SystemExit(f"no stored payment with transaction_id {args.transaction_id!r}")
    for record in records:
        if args.json:
            print_json(record)
        else:
            print(pretty_json(record))


def cmd_quarantine_list(args: argparse.Namespace) -> None:
    records: list[QuarantineRecord] = with_store(args, lambda s: s.quarantined(limit=args.limit))
    print_records(
        args, records,
        f"{'id':>6}  {'last seen':<25}  {'hits':>4}  {'errcode':>7}  {'mch_id':<12}"
        f"  {'transaction_id':<32}  reason",
        lambda r: f"{r.id:>6}  {shown(r.last_seen_at)}  {r.hits:>4}  {r.errcode:>7}"
                  f"  {r.mch_id:<12}  {r.transaction_id or '-':<32}  {r.reason}",
    )
