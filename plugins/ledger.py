"""ledger: double-entry books of every payment, in the router's own store.

Each payment is one journal entry, in the router's store whichever it is (SQLite or
PostgreSQL): the WeChat clearing account is debited and the rider's arrears receivable
credited, a pair of lines per settled order. A payment is booked exactly once per (mch_id,
transaction_id) however often, and by however many processes, it is delivered; a repay_no
paid by a second transaction is booked too (the money did arrive) and flagged as an
overpayment to refund.
``arrears-router ledger balance|export|overpayments`` read the books without locking them.
"""

from __future__ import annotations

import argparse
import csv
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import IO, Annotated, Any

import msgspec

from arrears_router import (
    CST,
    ArrearsPayment,
    Commands,
    Delivery,
    RetryableError,
    hookimpl,
    store_url,
)
from arrears_router.plugins import ledger_sqlite
from arrears_router.plugins.ledger_books import (
    Balance,
    Books,
    BooksError,
    Entry,
    ExportLine,
    Reader,
    journal_lines,
    overpayments,
    yuan,
)
from arrears_router.plugins.ledger_books import balances as read_balances
from arrears_router.plugins.ledger_books import export_lines as read_export_lines
from arrears_router.postgres import is_postgres
from arrears_router.sqlite import store_path

__all__ = ["Ledger", "open_books", "open_reader", "register_commands"]

# An account prefix is one name: the ':' joins it to the merchant or the rider.
ACCOUNT_PREFIX = r"^[A-Za-z0-9_.-]+$"


class Ledger:
    name = "ledger"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        clearing_account: Annotated[str, msgspec.Meta(pattern=ACCOUNT_PREFIX)] = "wechat_clearing"
        """Debited with each payment, as ``<this>:<mch_id>``: the money WeChat holds for the
        operator until it settles. Changing it affects only payments booked afterwards."""
        receivable_account: Annotated[str, msgspec.Meta(pattern=ACCOUNT_PREFIX)] = (
            "arrears_receivable"
        )
        """Credited with each payment, as ``<this>:<out_user_id>`` (the openid when WeChat
        sends no out_user_id): the rider's arrears, paid off."""
        busy_timeout: Annotated[float, msgspec.Meta(gt=0)] = 5.0
        """Seconds a booking waits for the store's lock (SQLite's write lock, held by the
        router or another process; on PostgreSQL, another booking of its repay_no), and
        again for this process's other bookings, before it gives up and the delivery is
        retried; keep twice it below the plugin's ``timeout``."""

        def __post_init__(self) -> None:
            if self.clearing_account == self.receivable_account:
                raise ValueError("clearing_account and receivable_account must differ")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._books: Books | None = None

    # Sync hooks: the router runs them on a thread, so the store's blocking calls never stall
    # its event loop; Books serialises this instance's threads on its one connection.

    @hookimpl
    def router_started(self, store_url: str) -> None:
        # An unknown store, or books newer than this code, stops the start-up here.
        self._books = open_books(store_url, busy_timeout=self.settings.busy_timeout)

    @hookimpl
    def router_stopping(self) -> None:
        books, self._books = self._books, None
        if books is not None:
            books.close()

    @hookimpl
    def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        books = self._books
        if books is None:
            raise RetryableError("the ledger's books are not open")
        entry = self.entry(payment, delivery.id)
        try:
            booked = books.book(entry, datetime.now(UTC).isoformat(timespec="microseconds"))
        except BooksError as exc:
            raise RetryableError(str(exc)) from exc
        # Flagged again on a repeat delivery: the first may have booked and then timed out or
        # died before it was recorded done, and an overpayment alert must not be lost.
        if booked.first_transaction_id is not None:
            delivery.flag(
                f"repay_no {payment.repay_no} paid again by {payment.transaction_id}"
                f" (first {booked.first_transaction_id}): overpayment to refund"
            )
        if not booked.new:
            return f"already booked as entry {booked.entry_id}"
        orders = len(entry.lines) // 2
        return f"booked entry {booked.entry_id}: {payment.total_fee} fen, {orders} line pair(s)"

    def entry(self, payment: ArrearsPayment, delivery_id: int) -> Entry:
        """The payment's journal entry. No openid goes into the note or the log, only here."""
        rider = payment.out_user_id or payment.openid
        order_nos = payment.order_no or tuple(order.order_no for order in payment.order)
        return Entry(
            mch_id=payment.mch_id, transaction_id=payment.transaction_id,
            repay_no=payment.repay_no, total_fee=payment.total_fee, time_end=payment.time_end,
            day=_day_of(payment), delivery_id=delivery_id,
            lines=journal_lines(
                payment.total_fee, order_nos,
                f"{self.settings.clearing_account}:{payment.mch_id}",
                f"{self.settings.receivable_account}:{rider}",
            ),
        )


def open_books(store_url: str, *, busy_timeout: float) -> Books:
    """The books in the store at ``store_url``, up to date, for writing."""
    if is_postgres(store_url):
        from arrears_router.plugins import ledger_postgres  # the driver is an extra

        return ledger_postgres.open_books(store_url, busy_timeout=busy_timeout)
    return ledger_sqlite.open_books(store_path(store_url, Ledger.name),
                                    busy_timeout=busy_timeout)


def open_reader(store_url: str) -> Reader:
    """The books in the store at ``store_url``, read-only: never locking a running router."""
    if is_postgres(store_url):
        from arrears_router.plugins import ledger_postgres

        return ledger_postgres.open_reader(store_url)
    return ledger_sqlite.open_reader(store_path(store_url, Ledger.name))


def _day_of(payment: ArrearsPayment) -> str:
    """The CST day of payment; when time_end is not a time, the day it is booked, so that the
    money is still in the books (time_end is kept raw on every line for a person to check).
    """
    moment = payment.paid_at or datetime.now(CST)
    return moment.astimezone(CST).date().isoformat()


# -- commands: `arrears-router ledger ...`


@hookimpl
def register_commands(commands: Commands) -> None:
    actions = commands.group(commands.add(
        "ledger", "the ledger's books: balances, CSV export for reconciliation, overpayments"))
    balance = actions.add("balance", "debits, credits and balance by account, in fen and yuan",
                          cmd_balance, json=True)
    balance.add_argument("--account", metavar="A",
                         help="one account, or every account under it (wechat_clearing)")
    balance.add_argument("--day", type=_day_arg, metavar="YYYY-MM-DD", help="one CST day")
    export = actions.add(
        "export", "CSV of every line of CST days FROM..TO, to reconcile with WeChat's bill",
        cmd_export)
    export.add_argument("--from", dest="first_day", type=_day_arg, required=True,
                        metavar="YYYY-MM-DD", help="first CST day, included")
    export.add_argument("--to", dest="last_day", type=_day_arg, required=True,
                        metavar="YYYY-MM-DD", help="last CST day, included")
    export.add_argument("--output", metavar="FILE", help="default: standard output")
    actions.add("overpayments", "repay_nos paid by more than one transaction: money to refund",
                cmd_overpayments, json=True)


def _day_arg(text: str) -> str:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date().isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from None


@contextmanager
def _books(args: argparse.Namespace) -> Iterator[Reader]:
    try:
        with closing(open_reader(store_url(args.config))) as db:
            yield db
    except BooksError as exc:
        raise SystemExit(f"ledger: {exc}") from None


_json_line = msgspec.json.Encoder()


def _print_json(obj: Any) -> None:
    sys.stdout.buffer.write(_json_line.encode(obj) + b"\n")


def _balance_json(balance: Balance, day: str | None) -> dict[str, Any]:
    fen = {"debit": balance.debit_fen, "credit": balance.credit_fen,
           "balance": balance.balance_fen}
    return {"account": balance.account, "day": day,
            **{f"{k}_fen": v for k, v in fen.items()},
            **{f"{k}_yuan": yuan(v) for k, v in fen.items()}}


def cmd_balance(args: argparse.Namespace) -> None:
    with _books(args) as db:
        found = read_balances(db, day=args.day, account=args.account)
    if args.json:
        for balance in found:
            _print_json(_balance_json(balance, args.day))
        sys.stdout.flush()
        return
    total = Balance(account="total", debit_fen=sum(b.debit_fen for b in found),
                    credit_fen=sum(b.credit_fen for b in found))
    _print_table([*found, total])


def _print_table(rows: list[Balance]) -> None:
    width = max(len("account"), *(len(row.account) for row in rows))
    header = ("debit_fen", "credit_fen", "balance_fen", "debit_yuan", "credit_yuan",
              "balance_yuan")
    print(f"{'account':<{width}}  " + "  ".join(f"{h:>12}" for h in header))
    for row in rows:
        fen = (row.debit_fen, row.credit_fen, row.balance_fen)
        cells = [str(v) for v in fen] + [yuan(v) for v in fen]
        print(f"{row.account:<{width}}  " + "  ".join(f"{c:>12}" for c in cells))


EXPORT_COLUMNS = ("day", "time_end", "mch_id", "transaction_id", "repay_no", "order_no",
                  "entry_id", "line_no", "account", "debit_fen", "credit_fen", "debit_yuan",
                  "credit_yuan")


def _csv_row(line: ExportLine) -> list[Any]:
    values = msgspec.structs.asdict(line)
    return [*(values[c] for c in EXPORT_COLUMNS[:-2]), yuan(line.debit_fen),
            yuan(line.credit_fen)]


def cmd_export(args: argparse.Namespace) -> None:
    if args.first_day > args.last_day:
        raise SystemExit(f"ledger: --from {args.first_day} is after --to {args.last_day}")
    with _books(args) as db, _output(args.output) as out:
        writer = csv.writer(out)
        writer.writerow(EXPORT_COLUMNS)
        written = 0
        for line in read_export_lines(db, args.first_day, args.last_day):
            writer.writerow(_csv_row(line))
            written += 1
    where = args.output or "standard output"
    print(f"ledger export: {written} line(s) of {args.first_day}..{args.last_day} to {where}",
          file=sys.stderr)


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    if path is None:
        try:
            yield sys.stdout
            sys.stdout.flush()
        except BrokenPipeError:  # piped into `head`, which stopped reading: no traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        return
    # Riders' payments: the owner alone may read them, from the first byte on. An existing
    # file is emptied before its mode is narrowed; a device (/dev/stdout) keeps its own.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.fchmod(fd, 0o600)
    with open(fd, "w", encoding="utf-8", newline="") as file:
        yield file


def cmd_overpayments(args: argparse.Namespace) -> None:
    with _books(args) as db:
        found = overpayments(db)
    for over in found:
        if args.json:
            _print_json({**msgspec.structs.asdict(over), "total_yuan": yuan(over.total_fee)})
        else:
            print(f"{over.day} mch_id {over.mch_id}: repay_no {over.repay_no} paid again by"
                  f" {over.transaction_id} (first {over.first_transaction_id}):"
                  f" {over.total_fee} fen ({yuan(over.total_fee)} yuan) to refund,"
                  f" entry {over.entry_id}")
    if not found and not args.json:
        print("no overpayments")
    sys.stdout.flush()
