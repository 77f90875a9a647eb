"""``events`` and ``quarantine``: the payments stored, and the authentic requests refused."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from arrears_router.cli.common import Commands, print_json, print_records, shown, with_store
from arrears_router.cli.deliveries import DELIVERIES_HEADER, delivery_line, field_lines
from arrears_router.http import mask_openid
from arrears_router.store import (
    DeliveryRecord,
    EventRecord,
    QuarantineRecord,
    QuarantineStats,
    Store,
)

__all__ = ["add_commands"]


def add_commands(commands: Commands) -> None:
    events = commands.group(commands.add("events", "stored payments"))
    listing = events.add("list", "most recent first", cmd_events_list, json=True)
    listing.add_argument("--limit", type=int, default=50)
    show = events.add("show", "one payment, whole, with its deliveries", cmd_events_show,
                      json=True)
    show.add_argument("transaction_id")

    quarantine = commands.group(commands.add("quarantine", "refused authentic requests"))
    q_list = quarantine.add("list", "most recently kept first", cmd_quarantine_list,
                            json=True)
    q_list.add_argument("--limit", type=int, default=50)
    q_show = quarantine.add("show", "one refused request, whole, its body as received",
                            cmd_quarantine_show, json=True)
    q_show.add_argument("id", type=int)
    quarantine.add("stats", "what the quarantine keeps, and what its bounds only counted",
                   cmd_quarantine_stats, json=True)


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
    async def read(store: Store) -> tuple[list[EventRecord], list[DeliveryRecord]]:
        return (await store.events_by_transaction(args.transaction_id),
                await store.deliveries_by_transaction(args.transaction_id))

    records, deliveries = with_store(args, read)
    if not records:
        raise SystemExit(f"no stored payment with transaction_id {args.transaction_id!r}")
    for record in records:  # one per merchant that has this transaction_id
        if args.json:  # the records alone, as `events list` has them; their deliveries:
            print_json(record)  # `deliveries list --transaction-id T --json`
            continue
        own = [d for d in deliveries if d.event_id == record.id]
        print(f"payment {record.id}, received {shown(record.received_at)}")
        print("\n".join(field_lines(msgspec.structs.asdict(record.payment))))
        print("deliveries" if own else "deliveries: none (no plugin was enabled or paused)")
        if own:
            print(DELIVERIES_HEADER)
            print("\n".join(map(delivery_line, own)))


def cmd_quarantine_list(args: argparse.Namespace) -> None:
    async def read(store: Store) -> tuple[list[QuarantineRecord], QuarantineStats]:
        return await store.quarantined(limit=args.limit), await store.quarantine_stats()

    records, stats = with_store(args, read)
    print_records(
        args, records,
        f"{'id':>6}  {'last seen':<25}  {'hits':>4}  {'errcode':>7}  {'mch_id':<12}"
        f"  {'transaction_id':<32}  reason",
        lambda r: f"{r.id:>6}  {shown(r.last_seen_at)}  {r.hits:>4}  {r.errcode:>7}"
                  f"  {r.mch_id:<12}  {r.transaction_id or '-':<32}  {r.reason}",
    )
    counted = sum(o.count for o in stats.overflow)
    if counted and not args.json:  # JSON lines are records only
        print(f"and {counted} request(s) only counted, not kept, a bound being reached:"
              " `arrears-router quarantine stats`")


def cmd_quarantine_show(args: argparse.Namespace) -> None:
    record: QuarantineRecord | None = with_store(args, lambda s: s.quarantine_record(args.id))
    if record is None:
        raise SystemExit(f"no quarantined request {args.id}")
    if args.json:
        print_json(record)
        return
    fields: dict[str, Any] = msgspec.structs.asdict(record)
    body = fields.pop("body")
    if record.reingested_at is None:  # never re-ingested: nothing to say of it
        fields = {name: value for name, value in fields.items() if "reingest" not in name}
    print(f"quarantined request {record.id}")
    print("\n".join(field_lines(fields)))
    print(f"body: {len(body)} bytes, as received:", flush=True)
    # The bytes themselves: a hostile request's need not be UTF-8, nor end in a newline.
    sys.stdout.buffer.write(body + b"\n" * (not body.endswith(b"\n")))
    sys.stdout.flush()


def cmd_quarantine_stats(args: argparse.Namespace) -> None:
    stats: QuarantineStats = with_store(args, lambda s: s.quarantine_stats())
    if args.json:
        print_json(stats)
        return
    bounds = stats.bounds
    print(f"kept: {stats.rows} request(s), {stats.bytes} bytes of bodies, {stats.hits}"
          " arrival(s)")
    print(f"bounds: {bounds.new_per_minute} new request(s) a minute per merchant,"
          f" {bounds.max_bytes} bytes of bodies in all")
    if not stats.overflow:
        print("only counted, not kept: none")
        return
    print("only counted, not kept (WeChat sends each again: it was refused):")
    print(f"  {'appid':<20}  {'mch_id':<12}  {'errcode':>7}  {'bound':<5}  {'count':>7}"
          f"  {'first':<25}  last")
    for o in stats.overflow:
        print(f"  {o.appid:<20}  {o.mch_id:<12}  {o.errcode:>7}  {o.bound:<5}  {o.count:>7}"
              f"  {shown(o.first_at):<25}  {shown(o.last_at)}")
