"""``reconcile``: WeChat's trade bill of a merchant's day against the payments stored, the
report kept and told to the plugins; ``reconcile history``, the reports kept.

Exit status: 0 when every payment of the bill is stored with its amount and none stored is
missing from the bill; 1 when a payment is missing, unexpected or of another amount; 2 when
no report was made (a bill that does not read whole, a config or store that cannot be read).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from contextlib import closing
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from arrears_router.cli.common import Commands, print_json, shown
from arrears_router.config import Config, ConfigError, config_path, load_config
from arrears_router.http import mask_openid
from arrears_router.logs import configure_logging, secrets_in
from arrears_router.platform.registry import Registry, RegistryError
from arrears_router.reconcile.bill import Bill, BillError, read_bill_file
from arrears_router.reconcile.compare import bill_scope
from arrears_router.reconcile.history import HistoryError, open_history
from arrears_router.reconcile.report import ReconcileLine, ReconcileReport
from arrears_router.reconcile.run import reconcile
from arrears_router.store import StoreError, open_store

__all__ = ["EXIT_DIFFERS", "EXIT_NO_REPORT", "add_commands"]

log = logging.getLogger("arrears_router.reconcile")
EXIT_DIFFERS = 1
"""A payment missing, unexpected or of another amount: someone must look."""
EXIT_NO_REPORT = 2
"""No report was made: nothing kept, no plugin told."""
HISTORY = "history"
"""``reconcile history`` lists the reports; a bill file of that name is ``./history``."""


def add_commands(commands: Commands) -> None:
    parser = commands.add(
        "reconcile", "compare WeChat's trade bill of a day with the payments stored, keep the"
        " report and tell the plugins; exit 1 if a payment is missing, unexpected or of"
        " another amount, 2 if the bill does not read; `reconcile history`: the reports kept",
        cmd_reconcile, json=True)
    parser.add_argument("bill_file", metavar="BILL_FILE",
                        help="the trade bill as downloaded (downloadbill CSV, UTF-8 or GBK);"
                             " `history` lists the reports kept")
    parser.add_argument("--merchant", metavar="MCH_ID",
                        help="the merchant (default: the one the bill's lines name)")
    parser.add_argument("--date", type=_day, metavar="YYYY-MM-DD",
                        help="the CST day (default: the day of the bill's payments)")
    parser.add_argument("--limit", type=int, default=20,
                        help="with history: the most recent N reports (default: 20)")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


def cmd_reconcile(args: argparse.Namespace) -> None:
    if args.bill_file == HISTORY:
        _history(args)
        return
    config = _config(args)
    try:
        bill = read_bill_file(args.bill_file)
        mch_id, day = bill_scope(bill, args.merchant, args.date)
    except BillError as exc:
        _no_report(f"{args.bill_file}: {exc}")
    try:
        report = asyncio.run(_compare(config, bill, mch_id=mch_id, day=day,
                                      bill_name=args.bill_file))
        with closing(open_history(config.store.url, write=True)) as history:
            report = history.keep(report)
    except (StoreError, HistoryError) as exc:
        _no_report(f"store error: {exc}")
    if args.json:
        print_json(report)
    else:
        print(summary(report))
        for line in report_lines(report):
            print(line)
        sys.stdout.flush()
    _tell_plugins(config, report)
    if not report.ok:
        raise SystemExit(EXIT_DIFFERS)


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(config_path(args.config))
    except ConfigError as exc:
        _no_report(f"config error: {exc}")


def _no_report(message: str) -> NoReturn:
    print(f"reconcile: {message}; no report made", file=sys.stderr)
    raise SystemExit(EXIT_NO_REPORT)


async def _compare(config: Config, bill: Bill, **scope: Any) -> ReconcileReport:
    store = open_store(config.store.url, readonly=True)
    await store.open()
    try:
        return await reconcile(store, bill, made_at=datetime.now(UTC), **scope)
    finally:
        await store.close()


def _tell_plugins(config: Config, report: ReconcileReport) -> None:
    """``reconciled`` on the configured plugins, loaded and started as ``serve`` does. The
    report is kept already: a plugin that fails is logged and changes no exit status."""
    configure_logging(config.log.format, config.log.level, secrets_in(config))
    try:
        registry = Registry.load(config.plugins)
    except RegistryError as exc:
        log.error("plugins not told of report %d: %s", report.id, exc)
        return
    if not registry.manager.hook.reconciled.get_hookimpls():
        return

    async def tell() -> None:
        await registry.start_all(config.store.url)
        try:
            await registry.announce_reconciled(report=report)
        finally:
            await registry.stop_all()

    try:
        asyncio.run(tell())
    except RegistryError as exc:
        log.error("plugins not told of report %d: %s", report.id, exc)


# -- output


def _yuan(fen: int | None) -> str:
    return "-" if fen is None else f"{fen // 100}.{fen % 100:02d}"


def summary(report: ReconcileReport) -> str:
    counts = report.counts
    verdict = "ok" if report.ok else "NOT OK"
    return (f"reconcile {report.mch_id} {report.day}: {verdict}: {counts.matched} matched"
            f" ({_yuan(report.matched_fen)} yuan), {counts.missing} missing,"
            f" {counts.unexpected} unexpected, {counts.amount_differs} amount differs;"
            f" {counts.other_trades} other trade(s) listed apart (report {report.id})")


def report_lines(report: ReconcileReport) -> list[str]:
    """A line for each payment someone must look at, and each other trade."""
    return [
        *(f"missing         {_from_bill(line)}  {_yuan(line.bill_fen)} yuan  paid {line.time}"
          f"  openid {mask_openid(line.openid)}" for line in report.missing),
        *(f"unexpected      event {line.event_id}  {line.transaction_id}"
          f"  {_yuan(line.stored_fen)} yuan  time_end {line.time}" for line in report.unexpected),
        *(f"amount differs  {_from_bill(line)}  bill {_yuan(line.bill_fen)} yuan"
          f"{_order_amount(line)}, stored {_yuan(line.stored_fen)} yuan (event {line.event_id})"
          for line in report.amount_differs),
        *(f"other trade     {_from_bill(line)}  {line.status}  {_yuan(line.bill_fen)} yuan"
          + (f", {_yuan(line.refund_fen)} yuan refunded" if line.refund_fen else "")
          + (f" (refund {line.refund_id})" if line.refund_id else "")
          for line in report.other_trades),
    ]


def _from_bill(line: ReconcileLine) -> str:
    return f"line {line.bill_line}  {line.transaction_id}"


def _order_amount(line: ReconcileLine) -> str:
    order = line.bill_order_fen
    return "" if order in (None, line.bill_fen) else f" (order amount {_yuan(order)})"


# -- reconcile history


def _history(args: argparse.Namespace) -> None:
    if args.merchant is not None or args.date is not None:
        raise SystemExit("reconcile history: --merchant and --date are for a bill")
    config = _config(args)
    try:
        with closing(open_history(config.store.url, write=False)) as history:
            reports = history.recent(args.limit)
    except HistoryError as exc:
        raise SystemExit(f"store error: {exc}") from None
    for report in reports:
        if args.json:
            print_json(report)
            continue
        counts = report.counts
        print(f"{report.id:>6}  {shown(report.made_at)}  {report.mch_id:<12}  {report.day}"
              f"  {'ok' if report.ok else 'NOT OK':<6}  matched {counts.matched},"
              f" missing {counts.missing}, unexpected {counts.unexpected}, amount differs"
              f" {counts.amount_differs}, other {counts.other_trades}  {report.bill}")
    if not reports and not args.json:
        print("no reconcile reports kept")
