"""The ``arrears-router`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from core.config import Config, ConfigError, config_path, load_config
from core.store import EventRecord, QuarantineRecord, Store, StoreError, open_store

__all__ = ["main"]

_json_line = msgspec.json.Encoder()


def _print_json(obj: Any) -> None:
    sys.stdout.buffer.write(_json_line.encode(obj) + b"\n")
    sys.stdout.flush()


def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(config_path(args.config))
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None


def _with_store(args: argparse.Namespace, use: Callable[[Store], Any]) -> Any:
    async def run() -> Any:
        store = open_store(_load(args).store.url)
        await store.open()
        try:
            return await use(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreError as exc:
        raise SystemExit(f"store error: {exc}") from None


# -- commands


def cmd_serve(args: argparse.Namespace) -> None:
    from core.app import create_app
    from core.server import serve

    config = _load(args)
    host = args.host or config.server.host
    port = config.server.port if args.port is None else args.port
    serve(create_app(config), host, port)


def cmd_check_config(args: argparse.Namespace) -> None:
    path = config_path(args.config)
    config = _load(args)
    print(f"{path}: ok")
    print(f"  listens on {config.server.host}:{config.server.port}{config.server.callback_path}"
          f" (bodies up to {config.server.max_body_bytes} bytes)")
    print(f"  store {config.store.url}")
    for merchant in config.merchants:
        rotation = f", {len(merchant.previous_keys)} previous key set(s)" * bool(
            merchant.previous_keys
        )
        print(f"  merchant appid={merchant.appid} mch_id={merchant.mch_id}"
              f" sign_types={','.join(merchant.sign_types)}{rotation}")


def cmd_simulate(args: argparse.Namespace) -> None:
    from core.simulate import default_url, pick_merchant, print_summary, run_simulation

    config = _load(args)
    merchant = pick_merchant(config, args.merchant)

    def report(outcome: Any) -> None:
        if args.json:
            _print_json(outcome)
        else:
            print(f"{outcome.transaction_id} {outcome.sent:<9} errcode={outcome.errcode}"
                  f" {outcome.errmsg}", flush=True)

    outcomes = asyncio.run(run_simulation(
        merchant, args.url or default_url(config), count=args.count,
        concurrency=args.concurrency, duplicate=args.duplicate, tampered=args.tamper,
        report=report,
    ))
    print_summary(outcomes)
    if not all(o.expected for o in outcomes):
        raise SystemExit(1)


def _mask(openid: str) -> str:
    return openid[:4] + "…" + openid[-4:] if len(openid) > 8 else "…"


def _event_line(record: EventRecord) -> str:
    p = record.payment
    return (f"{record.id:>8}  {record.received_at:%Y-%m-%d %H:%M:%S}  {p.mch_id:<12}"
            f"  {p.transaction_id:<32}  {p.total_fee / 100:>9.2f}  {p.repay_no:<24}"
            f"  {_mask(p.openid)}")


def cmd_events_list(args: argparse.Namespace) -> None:
    records: list[EventRecord] = _with_store(args, lambda s: s.events(limit=args.limit))
    if args.json:
        for record in records:
            _print_json(record)
        return
    print(f"{'id':>8}  {'received (UTC)':<19}  {'mch_id':<12}  {'transaction_id':<32}"
          f"  {'yuan':>9}  {'repay_no':<24}  openid")
    for record in records:
        print(_event_line(record))


def cmd_events_show(args: argparse.Namespace) -> None:
    records: list[EventRecord] = _with_store(
        args, lambda s: s.events_by_transaction(args.transaction_id)
    )
    if not records:
        raise SystemExit(f"no stored payment with transaction_id {args.transaction_id!r}")
    for record in records:
        if args.json:
            _print_json(record)
        else:
            print(msgspec.json.format(_json_line.encode(record)).decode())


def cmd_quarantine_list(args: argparse.Namespace) -> None:
    records: list[QuarantineRecord] = _with_store(args, lambda s: s.quarantined(limit=args.limit))
    if args.json:
        for record in records:
            _print_json(record)
        return
    print(f"{'id':>6}  {'last seen (UTC)':<19}  {'hits':>4}  {'errcode':>7}  {'mch_id':<12}"
          f"  {'transaction_id':<32}  reason")
    for r in records:
        print(f"{r.id:>6}  {r.last_seen_at:%Y-%m-%d %H:%M:%S}  {r.hits:>4}  {r.errcode:>7}"
              f"  {r.mch_id:<12}  {r.transaction_id or '-':<32}  {r.reason}")


def cmd_bench(args: argparse.Namespace) -> None:
    from core.bench import run_bench

    run_bench(args)


# -- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arrears-router",
        description="Receive WeChat ride-code arrears-payment notifications and fan them out.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", metavar="PATH",
        help="config file (default: $ARREARS_ROUTER_CONFIG, else ./config.toml)",
    )
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="one JSON object per line")

    def command(name: str, handler: Callable[[argparse.Namespace], None], help: str,
                parents: Sequence[argparse.ArgumentParser] = (common,),
                within: Any = commands) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = within.add_parser(name, help=help, parents=parents)
        sub.set_defaults(handler=handler)
        return sub

    serve = command("serve", cmd_serve, "run the router")
    serve.add_argument("--host", help="listen address (default: [server] host)")
    serve.add_argument("--port", type=int, help="listen port, 0 for any free one")

    command("check-config", cmd_check_config, "validate the config and summarise it")

    simulate = command("simulate", cmd_simulate,
                       "send signed, encrypted test notifications to a running router",
                       parents=(common, as_json))
    simulate.add_argument("--url", help="callback URL (default: from [server] in the config)")
    simulate.add_argument("--merchant", metavar="MCH_ID", help="default: the first merchant")
    simulate.add_argument("--count", type=int, default=1, help="notifications to send")
    simulate.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    simulate.add_argument("--duplicate", action="store_true",
                          help="send every notification twice, as WeChat's retries do")
    simulate.add_argument("--tamper", action="store_true",
                          help="also send a tampered copy of each; it must be refused (40003)")

    events = commands.add_parser("events", help="stored payments").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    listing = command("list", cmd_events_list, "most recent first", (common, as_json), events)
    listing.add_argument("--limit", type=int, default=50)
    show = command("show", cmd_events_show, "one payment, whole", (common, as_json), events)
    show.add_argument("transaction_id")

    quarantine = commands.add_parser("quarantine", help="refused authentic requests")
    q_actions = quarantine.add_subparsers(dest="action", required=True, metavar="ACTION")
    q_list = command("list", cmd_quarantine_list, "most recent first", (common, as_json),
                     q_actions)
    q_list.add_argument("--limit", type=int, default=50)

    bench = command("bench", cmd_bench,
                    "measure the accept path against a bare Litestar endpoint")
    from core.bench import add_arguments

    add_arguments(bench)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    args = build_parser().parse_args(argv)
    args.handler(args)
