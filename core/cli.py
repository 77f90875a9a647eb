"""The ``arrears-router`` command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import msgspec

from core.config import Config, ConfigError, config_path, load_config
from core.payment import CST
from core.store import (
    DeliveryRecord,
    DeliveryStatus,
    EventRecord,
    Mode,
    ModeChange,
    PluginState,
    QuarantineRecord,
    Store,
    StoreError,
    open_store,
)

if TYPE_CHECKING:
    from core.runtime import Router

__all__ = ["main"]

COMMANDS_GROUP = "arrears_router.commands"
_json_line = msgspec.json.Encoder()


def _print_json(obj: Any) -> None:
    sys.stdout.buffer.write(_json_line.encode(obj) + b"\n")
    sys.stdout.flush()


def _load(args: argparse.Namespace) -> Config:
    try:
        return load_config(config_path(args.config))
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None


def _with_store(
    args: argparse.Namespace, use: Callable[[Store], Any], *, write: bool = False
) -> Any:
    """Run ``use`` on the config's store, opened read-only unless it must ``write``."""

    async def run() -> Any:
        store = open_store(_load(args).store.url, readonly=not write)
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


def _router(args: argparse.Namespace, *, dispatch: bool) -> Router:
    from core.registry import RegistryError
    from core.runtime import Router

    config = _load(args)
    try:
        return Router(config, config_file=config_path(args.config), dispatch=dispatch)
    except RegistryError as exc:
        raise SystemExit(f"config error: {config_path(args.config)}: {exc}") from None


def cmd_serve(args: argparse.Namespace) -> None:
    from core.app import create_app
    from core.engine_process import EngineProcess
    from core.registry import Registry, RegistryError
    from core.server import serve

    path = config_path(args.config)
    config = _load(args)
    try:  # refused here, with the key named, before any process starts
        Registry.load(config.plugins)
    except RegistryError as exc:
        raise SystemExit(f"config error: {path}: {exc}") from None
    engine = EngineProcess([
        sys.executable, "-m", "core", "engine", "--config", str(path.resolve()),
        *(["--no-dispatch"] if args.no_dispatch else []),
    ])
    serve(create_app(engine, config.server), args.host or config.server.host,
          config.server.port if args.port is None else args.port)


def cmd_engine(args: argparse.Namespace) -> None:
    from core.engine import run_engine

    router = _router(args, dispatch=not args.no_dispatch)
    sock = socket.socket(fileno=args.fd)
    try:
        import uvloop
    except ImportError:  # not on Windows
        asyncio.run(run_engine(router, sock))
    else:
        uvloop.run(run_engine(router, sock))


def cmd_worker(args: argparse.Namespace) -> None:
    router = _router(args, dispatch=True)

    async def work() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        async with router.running():
            print("arrears-router worker running", flush=True)
            await stopping.wait()

    asyncio.run(work())


def cmd_check_config(args: argparse.Namespace) -> None:
    from core.registry import Registry, RegistryError

    path = config_path(args.config)
    config = _load(args)
    try:
        registry = Registry.load(config.plugins)
    except RegistryError as exc:
        raise SystemExit(f"config error: {path}: {exc}") from None
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
    for plugin in registry.plugins.values():
        after = f" after {','.join(plugin.policy.after)}" * bool(plugin.policy.after)
        print(f"  plugin {plugin.name} ({plugin.policy.mode}{after})")


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


def _print_records(
    args: argparse.Namespace, records: Sequence[Any], header: str, line: Callable[[Any], str]
) -> None:
    """``--json``: one object a line; else a header and a line a record."""
    if args.json:
        for record in records:
            _print_json(record)
        return
    print(header)
    for record in records:
        print(line(record))


def _mask(openid: str) -> str:
    return openid[:4] + "…" + openid[-4:] if len(openid) > 8 else "…"


def _event_line(record: EventRecord) -> str:
    p = record.payment
    return (f"{record.id:>8}  {record.received_at:%Y-%m-%d %H:%M:%S}  {p.mch_id:<12}"
            f"  {p.transaction_id:<32}  {p.total_fee / 100:>9.2f}  {p.repay_no:<24}"
            f"  {_mask(p.openid)}")


def cmd_events_list(args: argparse.Namespace) -> None:
    records: list[EventRecord] = _with_store(args, lambda s: s.events(limit=args.limit))
    _print_records(args, records,
                   f"{'id':>8}  {'received (UTC)':<19}  {'mch_id':<12}  {'transaction_id':<32}"
                   f"  {'yuan':>9}  {'repay_no':<24}  openid", _event_line)


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
    _print_records(
        args, records,
        f"{'id':>6}  {'last seen (UTC)':<19}  {'hits':>4}  {'errcode':>7}  {'mch_id':<12}"
        f"  {'transaction_id':<32}  reason",
        lambda r: f"{r.id:>6}  {r.last_seen_at:%Y-%m-%d %H:%M:%S}  {r.hits:>4}  {r.errcode:>7}"
                  f"  {r.mch_id:<12}  {r.transaction_id or '-':<32}  {r.reason}",
    )


def cmd_plugins_list(args: argparse.Namespace) -> None:
    states: list[PluginState] = _with_store(args, lambda s: s.plugin_states())
    _print_records(
        args, states, f"{'plugin':<20} {'mode':<9} {'pending':>8} {'done':>8} {'dead':>6}",
        lambda s: f"{s.name:<20} {s.mode:<9} {s.pending:>8} {s.done:>8} {s.dead:>6}"
                  + ("" if s.configured else "  (not in the config)"),
    )


def cmd_plugins_history(args: argparse.Namespace) -> None:
    changes: list[ModeChange] = _with_store(args, lambda s: s.mode_changes(limit=args.limit))
    for change in changes:
        if args.json:
            _print_json(change)
        else:
            print(f"{change.at:%Y-%m-%d %H:%M:%S}  {change.plugin:<20} "
                  f"{change.from_mode or '-':<9} -> {change.to_mode:<9} by {change.actor}")


def cmd_plugins_set_mode(args: argparse.Namespace) -> None:
    mode = Mode(args.mode)
    previous: Mode = _with_store(args, lambda s: s.set_mode(args.name, mode, args.by), write=True)
    print(f"{args.name}: {previous} -> {mode}")


def cmd_deliveries_list(args: argparse.Namespace) -> None:
    status = DeliveryStatus(args.status) if args.status else None
    records: list[DeliveryRecord] = _with_store(
        args, lambda s: s.deliveries(plugin=args.plugin, status=status, limit=args.limit)
    )
    _print_records(
        args, records,
        f"{'id':>8}  {'plugin':<16} {'status':<8} {'tries':>5}  {'transaction_id':<32}"
        "  note/error",
        lambda d: f"{d.id:>8}  {d.plugin:<16} {d.status:<8} {d.attempt:>5}"
                  f"  {d.transaction_id:<32}  {d.note or d.last_error}",
    )


def cmd_deliveries_show(args: argparse.Namespace) -> None:
    record: DeliveryRecord | None = _with_store(args, lambda s: s.delivery(args.id))
    if record is None:
        raise SystemExit(f"no delivery {args.id}")
    encoded = _json_line.encode(record)
    print(encoded.decode() if args.json else msgspec.json.format(encoded).decode())


def cmd_replay(args: argparse.Namespace) -> None:
    if args.delivery is None and args.plugin is None and args.since is None:
        raise SystemExit("replay: say what: --delivery ID, or --plugin NAME and/or --since/--until")
    count: int = _with_store(args, lambda s: s.replay(
        delivery_id=args.delivery, plugin=args.plugin, since=args.since, until=args.until,
    ), write=True)
    print(f"{count} deliver{'y' if count == 1 else 'ies'} due again")


def _moment(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is China Standard Time, as WeChat's are."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=CST)


def _actor() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


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
    serve.add_argument("--no-dispatch", action="store_true",
                       help="only accept; separate `worker` processes deliver")

    command("worker", cmd_worker, "deliver payments to plugins, without the HTTP side")

    # serve's own second process (core/engine.py), started by serve and never by hand.
    engine = commands.add_parser("engine", parents=[common])
    engine.set_defaults(handler=cmd_engine)
    engine.add_argument("--fd", type=int, required=True)
    engine.add_argument("--no-dispatch", action="store_true")

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

    plugins = commands.add_parser("plugins", help="plugins and their modes")
    p_actions = plugins.add_subparsers(dest="action", required=True, metavar="ACTION")
    command("list", cmd_plugins_list, "modes and deliveries by status", (common, as_json),
            p_actions)
    history = command("history", cmd_plugins_history, "the audit log of mode changes",
                      (common, as_json), p_actions)
    history.add_argument("--limit", type=int, default=50)
    for verb, mode in (("enable", "enabled"), ("pause", "paused"), ("disable", "disabled")):
        change = command(verb, cmd_plugins_set_mode, f"set a plugin's mode to {mode}, live",
                         (common,), p_actions)
        change.add_argument("name")
        change.add_argument("--by", default=_actor(), help="who, for the audit log")
        change.set_defaults(mode=mode)

    deliveries = commands.add_parser("deliveries", help="each plugin's work on each payment")
    d_actions = deliveries.add_subparsers(dest="action", required=True, metavar="ACTION")
    d_list = command("list", cmd_deliveries_list, "newest first", (common, as_json), d_actions)
    d_list.add_argument("--plugin")
    d_list.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    d_list.add_argument("--limit", type=int, default=50)
    d_show = command("show", cmd_deliveries_show, "one delivery", (common, as_json), d_actions)
    d_show.add_argument("id", type=int)

    replay = command("replay", cmd_replay,
                     "run dead deliveries again (or one delivery, dead or done)")
    replay.add_argument("--delivery", type=int, metavar="ID")
    replay.add_argument("--plugin", metavar="NAME", help="every dead delivery of this plugin")
    replay.add_argument("--since", type=_moment, metavar="TIME",
                        help="dead deliveries created at or after (ISO 8601; CST if no zone)")
    replay.add_argument("--until", type=_moment, metavar="TIME", help="... and before")

    # Commands a plugin adds (`arrears-router ledger ...`): the entry-point group names a
    # function that fills in its parser; built-ins and third parties register the same way.
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        register = entry.load()
        summary = (register.__doc__ or "").strip().splitlines()[:1]
        register(commands.add_parser(entry.name, help=" ".join(summary), parents=[common]))

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
    for chatty in ("httpx", "watchfiles"):  # a line per request or per file event is noise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except ConfigError as exc:
        raise SystemExit(f"config error: {exc}") from None
