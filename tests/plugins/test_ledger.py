"""The ledger: real routers on real stores, its hooks called as the dispatcher calls them,
and its commands run as an operator runs them (a subprocess of `python -m arrears_router`).

Whatever does not need the router's own tables runs on both stores (the ``books_url``
fixture): a SQLite file, and a PostgreSQL schema where ``$ARREARS_ROUTER_TEST_POSTGRES`` is
set. The exactly-once and overpayment guarantees are tested on PostgreSQL with several
connections booking at once, and end to end with two router processes sharing one database.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrears_router import ArrearsPayment, ConfigError, Delivery, Order, RetryableError
from arrears_router.config import MerchantConfig
from arrears_router.payment import parse_time_end
from arrears_router.platform.registry import Registry, RegistryError
from arrears_router.plugins.ledger import Ledger, open_reader
from arrears_router.plugins.ledger_books import BooksError, balances, split_fen
from arrears_router.store import DeliveryStatus
from arrears_router.testkit import RouterFactory, TestRouter
from arrears_router.wire.notifier import sample_payload
from tests import harness
from tests.harness import json_lines, postgres_schema
from tests.sample_plugins import DeadLetters

CLASSES = {"ledger": Ledger, "alerts": DeadLetters}
MCH_ID = "1900000109"  # the test kit's merchant
CLEARING = f"wechat_clearing:{MCH_ID}"
OPENID = "oRider0000000000000000000001"


# -- helpers


def store_file(router: TestRouter) -> str:
    return router.config.store.url


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql://")


def execute(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` (``?`` parameters) on the store at ``url`` directly, independently of the
    plugin's own code; its rows. Sums come back as int from either store."""
    if is_postgres(url):
        with psycopg.connect(url, autocommit=True) as pg:
            cursor = pg.execute(sql.replace("?", "%s"), params)
            rows = cursor.fetchall() if cursor.description else []
    else:
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)) as db:
            rows = db.execute(sql, params).fetchall()
    return [tuple(int(v) if isinstance(v, Decimal) else v for v in row) for row in rows]


query = execute  # reading, in the tests that only read


def lines_of(url: str, transaction_id: str) -> list[tuple[Any, ...]]:
    return query(url, """
        SELECT line_no, account, debit_fen, credit_fen, order_no, repay_no, time_end, day
        FROM ledger_lines WHERE transaction_id = ? ORDER BY line_no""", transaction_id)


def entry_count(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM ledger_entries")[0][0])


def fresh_store(kind: str, folder: Path) -> AbstractContextManager[str]:
    """A new, empty store of ``kind``: a file in ``folder``, or a PostgreSQL schema."""
    if kind == "postgresql":
        return postgres_schema()
    return _sqlite_store(folder)


@contextmanager
def _sqlite_store(folder: Path) -> Iterator[str]:
    yield f"sqlite:///{folder / 'books.db'}"


STORES = ["sqlite", "postgresql"]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return harness.cli("ledger", *args, config=config)


def config_file(path: Path, store_url: str, merchant: MerchantConfig) -> Path:
    """A config.toml for the commands, on the store at ``store_url``."""
    fields = "\n".join(f"{key} = {json.dumps(getattr(merchant, key))}"
                       for key in ("appid", "mch_id", "sign_key", "aes_key"))
    path.write_text(f"[store]\nurl = {json.dumps(store_url)}\n\n[[merchants]]\n{fields}\n")
    return path


@pytest.fixture
def config(tmp_path: Path, arrears_merchant: MerchantConfig) -> Path:
    """A config.toml for the commands, on the test kit's store (``router.db`` beside it)."""
    return config_file(tmp_path / "config.toml", "sqlite:///router.db", arrears_merchant)


def payment(transaction_id: str, *, total_fee: int = 300, orders: tuple[str, ...] = ("O1",),
            repay_no: str = "R1", time_end: str = "20261125093015", mch_id: str = MCH_ID,
            out_user_id: str = "rider-1") -> ArrearsPayment:
    """A payment as the router hands it to a plugin (paid_at read from time_end as it does)."""
    return ArrearsPayment(
        appid="wxtestkit0000001", mch_id=mch_id, transaction_id=transaction_id,
        total_fee=total_fee, openid=OPENID, bank_type="LQT", time_end=time_end,
        repay_no=repay_no, order_no=orders, out_user_id=out_user_id,
        paid_at=parse_time_end(time_end),
    )


def delivery(number: int, pay: ArrearsPayment, ledger: Ledger) -> Delivery:
    return Delivery(id=number, plugin="ledger", attempt=1,
                    idempotency_key=f"{pay.mch_id}:{pay.transaction_id}:ledger",
                    settings=ledger.settings, log=logging.getLogger("test.ledger"))


def started(url: str, **settings: Any) -> Ledger:
    ledger = Ledger(msgspec.convert(settings, Ledger.Settings))
    ledger.router_started(url)
    return ledger


@pytest.fixture(params=STORES)
def books_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store of each kind, with no router in it: the ledger's tables alone."""
    with fresh_store(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def ledger(books_url: str) -> Iterator[Ledger]:
    """The plugin alone on a fresh store, its hooks called directly."""
    plugin = started(books_url)
    yield plugin
    plugin.router_stopping()


# -- booking through a real router


def test_one_entry_per_payment_a_line_pair_per_order_remainder_first(
    arrears_router: RouterFactory,
) -> None:
    router = arrears_router({"ledger": {}}, classes=CLASSES)
    # 00:30 CST is the previous day in UTC: the books' day must be the CST one.
    report = router.pay(total_fee=1000, order_no=["A", "B", "C"], repay_no="R1",
                        out_user_id="rider-7", time_end="20261125003000")
    report.assert_done("ledger")
    assert report.deliveries["ledger"].note == "booked entry 1: 1000 fen, 3 line pair(s)"
    store = store_file(router)
    assert entry_count(store) == 1
    rider = "arrears_receivable:rider-7"
    raw = ("R1", "20261125003000", "2026-11-25")
    assert lines_of(store, report.transaction_id) == [
        (1, CLEARING, 334, 0, "A", *raw), (2, rider, 0, 334, "A", *raw),
        (3, CLEARING, 333, 0, "B", *raw), (4, rider, 0, 333, "B", *raw),
        (5, CLEARING, 333, 0, "C", *raw), (6, rider, 0, 333, "C", *raw),
    ]


def test_no_orders_is_one_pair_and_the_openid_stays_in_the_books(
    arrears_router: RouterFactory,
) -> None:
    router = arrears_router({"ledger": {}}, classes=CLASSES)
    report = router.pay(total_fee=301, order_no=[], order=[], out_user_id="",
                        time_end="2026112509301500")  # WeChat's example has 16 digits
    note = report.deliveries["ledger"].note
    assert note == "booked entry 1: 301 fen, 1 line pair(s)"
    assert OPENID not in note
    assert [line[:5] for line in lines_of(store_file(router), report.transaction_id)] == [
        (1, CLEARING, 301, 0, ""), (2, f"arrears_receivable:{OPENID}", 0, 301, ""),
    ]
    assert lines_of(store_file(router), report.transaction_id)[0][6] == "2026112509301500"


def test_a_duplicate_delivery_books_nothing_more(arrears_router: RouterFactory) -> None:
    router = arrears_router({"ledger": {}}, classes=CLASSES)
    report = router.exercise(total_fee=450)
    report.assert_done("ledger")
    assert report.deliveries["ledger"].replays == 1
    assert report.deliveries["ledger"].note == "already booked as entry 1"
    assert entry_count(store_file(router)) == 1
    assert len(lines_of(store_file(router), report.transaction_id)) == 4


def test_concurrent_deliveries_of_one_payment_book_it_once(
    arrears_router: RouterFactory,
) -> None:
    """Three more ledgers on the router's store (as worker processes would have), eight
    threads released at once, and the router's own delivery of the same payment.
    """
    router = arrears_router({"ledger": {}}, classes=CLASSES)
    url = router.config.store.url
    ledgers = [started(url) for _ in range(3)]
    transaction_id = "4200000000000000000000000042"
    fields = sample_payload(transaction_id, total_fee=999)
    pay = msgspec.convert({**fields, "appid": "wxtestkit0000001", "mch_id": MCH_ID,
                           "paid_at": parse_time_end(fields["time_end"])}, ArrearsPayment)
    threads = 8
    gate = threading.Barrier(threads + 1)
    notes: list[str] = []

    def deliver(number: int) -> None:
        plugin = ledgers[number % len(ledgers)]
        gate.wait()
        notes.append(plugin.arrears_paid(pay, delivery(1000 + number, pay, plugin)))

    workers = [threading.Thread(target=deliver, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    gate.wait()
    assert router.send(fields).errcode == 0
    for worker in workers:
        worker.join()
    routed = router.settle(transaction_id)["ledger"]
    for plugin in ledgers:
        plugin.router_stopping()

    assert routed.status is DeliveryStatus.DONE
    notes.append(routed.note)
    assert len(notes) == threads + 1
    assert sum(note.startswith("booked entry ") for note in notes) == 1, notes
    store = store_file(router)
    assert entry_count(store) == 1
    assert [line[2:4] for line in lines_of(store, transaction_id)] == [
        (500, 0), (0, 500), (499, 0), (0, 499)]


def test_a_repay_no_paid_twice_is_booked_flagged_alerted_and_listed(
    arrears_router: RouterFactory, tmp_path: Path, config: Path,
) -> None:
    alerts = tmp_path / "alerts"
    router = arrears_router({"ledger": {}, "alerts": {"path": str(alerts)}}, classes=CLASSES)
    first = router.pay(transaction_id="T1", repay_no="R9", total_fee=500)
    assert first.deliveries["ledger"].note == "booked entry 1: 500 fen, 2 line pair(s)"
    second = router.pay(transaction_id="T2", repay_no="R9", total_fee=500)
    reason = "repay_no R9 paid again by T2 (first T1): overpayment to refund"
    assert second.deliveries["ledger"].note == (
        f"booked entry 2: 500 fen, 2 line pair(s); flagged: {reason}")
    assert alerts.read_text().splitlines() == [f"flagged ledger {reason}"]
    assert entry_count(store_file(router)) == 2  # the money arrived: it is in the books

    # A repeat delivery may be the one whose first run booked but was never recorded done:
    # it flags again (alerts are at least once), and books and records nothing more.
    again = router.redeliver(second)
    assert again.deliveries["ledger"].note == f"already booked as entry 2; flagged: {reason}"
    assert alerts.read_text().splitlines() == [f"flagged ledger {reason}"] * 2

    listed = cli(config, "overpayments", "--json")
    assert listed.returncode == 0, listed.stderr
    [row] = json_lines(listed.stdout)
    assert {k: v for k, v in row.items() if k != "detected_at"} == {
        "entry_id": 2, "day": "2026-11-25", "mch_id": MCH_ID, "repay_no": "R9",
        "transaction_id": "T2", "first_transaction_id": "T1", "total_fee": 500,
        "total_yuan": "5.00",
    }
    text = cli(config, "overpayments")
    assert text.stdout == (f"2026-11-25 mch_id {MCH_ID}: repay_no R9 paid again by T2"
                           " (first T1): 500 fen (5.00 yuan) to refund, entry 2\n")


def test_books_are_versioned_apart_from_the_routers_schema(
    arrears_router: RouterFactory,
) -> None:
    router = arrears_router({"ledger": {}}, classes=CLASSES)
    store = store_file(router)
    (router_version,) = query(store, "PRAGMA user_version")[0]
    assert router_version > 0  # the router's own, untouched by the ledger
    assert query(store, "SELECT version FROM ledger_schema") == [(1,)]
    tables = {name for (name,) in query(
        store, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'ledger%'")}
    assert tables == {"ledger_schema", "ledger_entries", "ledger_lines", "ledger_overpayments"}
    started(router.config.store.url).router_stopping()  # a second start migrates nothing
    assert query(store, "SELECT version FROM ledger_schema") == [(1,)]


# -- the hooks alone


def test_the_same_repay_no_at_another_merchant_is_no_overpayment(ledger: Ledger) -> None:
    one, other = payment("T1", mch_id="m1"), payment("T2", mch_id="m2")
    for number, pay in enumerate((one, other)):
        sent = delivery(number, pay, ledger)
        assert ledger.arrears_paid(pay, sent).startswith("booked entry ")
        assert sent.flags == []
    blank = payment("T3", repay_no=""), payment("T4", repay_no="")  # an empty one names nothing
    for pay in blank:
        sent = delivery(9, pay, ledger)
        ledger.arrears_paid(pay, sent)
        assert sent.flags == []


def test_without_order_no_the_orders_numbers_are_used(ledger: Ledger, books_url: str) -> None:
    pay = msgspec.structs.replace(payment("T1", total_fee=5, orders=()),
                                  order=(Order(order_no="X"), Order(order_no="Y")))
    ledger.arrears_paid(pay, delivery(1, pay, ledger))
    assert query(books_url, "SELECT order_no, debit_fen, credit_fen"
                 " FROM ledger_lines ORDER BY line_no") == [
        ("X", 3, 0), ("X", 0, 3), ("Y", 2, 0), ("Y", 0, 2)]


def test_a_third_payment_names_the_first(ledger: Ledger) -> None:
    for transaction_id in ("T1", "T2"):
        ledger.arrears_paid(payment(transaction_id), delivery(1, payment(transaction_id), ledger))
    third = delivery(3, payment("T3"), ledger)
    ledger.arrears_paid(payment("T3"), third)
    assert third.flags == ["repay_no R1 paid again by T3 (first T1): overpayment to refund"]


def test_a_payment_time_that_is_not_a_time_is_booked_on_the_day_it_arrives(
    ledger: Ledger, books_url: str
) -> None:
    before = date.today() - timedelta(days=1)  # CST may be a day ahead of this machine
    ledger.arrears_paid(payment("T1", time_end="garbage"), delivery(1, payment("T1"), ledger))
    [(day, time_end)] = query(books_url, "SELECT day, time_end FROM ledger_entries")
    assert time_end == "garbage"
    assert before <= date.fromisoformat(day) <= before + timedelta(days=2)


def test_a_stopped_ledger_asks_for_a_retry(ledger: Ledger) -> None:
    ledger.router_stopping()
    with pytest.raises(RetryableError, match="not open"):
        ledger.arrears_paid(payment("T1"), delivery(1, payment("T1"), ledger))


def test_books_newer_than_this_code_stop_the_start(ledger: Ledger, books_url: str) -> None:
    ledger.router_stopping()
    if is_postgres(books_url):
        execute(books_url, "UPDATE schema_versions SET version = 99 WHERE name = 'ledger'")
    else:
        execute(books_url, "UPDATE ledger_schema SET version = 99")
    with pytest.raises(BooksError, match="are version 99; this arrears-router knows up to 1"):
        started(books_url)
    with pytest.raises(BooksError, match="are version 99; this arrears-router knows up to 1"):
        open_reader(books_url)


def test_an_unknown_store_is_refused_naming_its_scheme_alone() -> None:
    with pytest.raises(ConfigError, match=r"store\.url: .*sqlite:///PATH") as error:
        started("mysql://books:s3cret@db.example/arrears")
    assert "s3cret" not in str(error.value)
    assert "'mysql'" in str(error.value)


def test_an_unreachable_postgresql_is_retried_and_its_url_never_told() -> None:
    url = "postgresql://books:s3cret@127.0.0.1:1/arrears"  # nothing listens on port 1
    with pytest.raises(BooksError, match="cannot open the PostgreSQL store for the ledger"
                       ) as error:
        started(url)
    assert "s3cret" not in str(error.value)
    assert "books:" not in str(error.value)


@pytest.mark.parametrize(("table", "message"), [
    ({"clearing_account": "x", "receivable_account": "x"},
     "plugins.ledger: clearing_account and receivable_account must differ"),
    ({"clearing_account": "a:b"},
     "plugins.ledger.clearing_account: Expected `str` matching regex '^[A-Za-z0-9_.-]+$'"),
    ({"busy_timeout": 0}, "plugins.ledger.busy_timeout: Expected `float` > 0.0"),
    ({"prefix": "x"}, "plugins.ledger.prefix: unknown key"),
])
def test_bad_settings_are_refused_naming_the_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistryError) as error:
        Registry.load({"ledger": table})  # found as a built-in, as config.toml names it
    assert str(error.value) == message


def test_custom_account_names(books_url: str) -> None:
    plugin = started(books_url, clearing_account="1122.wechat", receivable_account="1131.riders")
    plugin.arrears_paid(payment("T1"), delivery(1, payment("T1"), plugin))
    plugin.router_stopping()
    assert [account for (account,) in query(
        books_url, "SELECT account FROM ledger_lines ORDER BY line_no")] == [
        f"1122.wechat:{MCH_ID}", "1131.riders:rider-1"]


# -- the invariant


PAYMENTS = st.lists(
    st.tuples(
        st.one_of(st.sampled_from([0, 1, 3, 999, 1001]), st.integers(0, 10**7)),  # fen
        st.integers(0, 5),  # orders settled
        st.one_of(  # time_end: a CST moment on one of a few days, or not a time at all
            st.datetimes(min_value=datetime(2026, 11, 24),
                         max_value=datetime(2026, 11, 27, 23, 59, 59)
                         ).map(lambda moment: moment.strftime("%Y%m%d%H%M%S")),
            st.just("not-a-time"),
        ),
        st.sampled_from(["R1", "R2", "R3", ""]),  # a repay_no pool, so some are paid twice
        st.booleans(),  # delivered twice
    ),
    min_size=1, max_size=10,
)


@pytest.mark.parametrize("kind", STORES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PAYMENTS)
def test_debits_equal_credits_for_every_day_and_overall(
    kind: str, payments: list[tuple[int, int, str, str, bool]],
) -> None:
    with tempfile.TemporaryDirectory() as folder, fresh_store(kind, Path(folder)) as books:
        plugin = started(books)
        try:
            for number, (fen, orders, time_end, repay_no, twice) in enumerate(payments):
                pay = payment(f"T{number}", total_fee=fen, time_end=time_end, repay_no=repay_no,
                              orders=tuple(f"O{number}-{n}" for n in range(orders)))
                for _ in range(1 + twice):
                    plugin.arrears_paid(pay, delivery(number, pay, plugin))
        finally:
            plugin.router_stopping()
        check_books(books, payments)


def check_books(books: str, payments: list[tuple[int, int, str, str, bool]]) -> None:
    days = [day for (day,) in query(books, "SELECT DISTINCT day FROM ledger_lines")]
    for day in [*days, None]:  # None: overall
        [(debits, credits)] = query(books, """
            SELECT sum(debit_fen), sum(credit_fen) FROM ledger_lines
            WHERE CAST(? AS TEXT) IS NULL OR day = ?""", day, day)
        assert debits == credits
        with closing(open_reader(books)) as db:  # the numbers `ledger balance` prints
            found = balances(db, day=day)
        assert sum(b.debit_fen for b in found) == sum(b.credit_fen for b in found) == debits
    [(overall,)] = query(books, "SELECT sum(debit_fen) FROM ledger_lines")
    assert overall == sum(fen for fen, *_ in payments)  # every fen, once
    assert entry_count(books) == len(payments)
    for number, (fen, orders, *_) in enumerate(payments):
        rows = query(books, "SELECT debit_fen, credit_fen FROM ledger_lines"
                            " WHERE transaction_id = ? ORDER BY line_no", f"T{number}")
        assert [d for d, _ in rows[::2]] == [c for _, c in rows[1::2]] == split_fen(
            fen, max(orders, 1))
        assert sum(d for d, _ in rows) == sum(c for _, c in rows) == fen
    repaid = Counter(repay_no for *_, repay_no, _ in payments if repay_no)
    [(overpaid,)] = query(books, "SELECT count(*) FROM ledger_overpayments")
    assert overpaid == sum(count - 1 for count in repaid.values())


def test_split_fen_puts_the_remainder_on_the_first_share() -> None:
    assert split_fen(1000, 3) == [334, 333, 333]
    assert split_fen(2, 5) == [2, 0, 0, 0, 0]
    assert split_fen(0, 1) == [0]


# -- the commands


@pytest.fixture
def two_days(ledger: Ledger, books_url: str, tmp_path: Path,
             arrears_merchant: MerchantConfig) -> Path:
    """A config.toml on a store of each kind whose books hold 1000 fen on 2026-11-25 over
    three orders and 301 fen on 2026-11-26 over two."""
    for number, pay in enumerate([
        payment("T1", repay_no="R1", total_fee=1000, orders=("A", "B", "C"),
                out_user_id="rider-7", time_end="20261125093015"),
        payment("T2", repay_no="R2", total_fee=301, orders=("D", "E"),
                out_user_id="rider-8", time_end="20261126003000"),
    ]):
        ledger.arrears_paid(pay, delivery(number, pay, ledger))
    return config_file(tmp_path / "books.toml", books_url, arrears_merchant)


def table(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_ledger_balance(two_days: Path) -> None:
    config = two_days
    result = cli(config, "balance")
    assert result.returncode == 0, result.stderr
    assert table(result.stdout) == [
        ["account", "debit_fen", "credit_fen", "balance_fen", "debit_yuan", "credit_yuan",
         "balance_yuan"],
        ["arrears_receivable:rider-7", "0", "1000", "-1000", "0.00", "10.00", "-10.00"],
        ["arrears_receivable:rider-8", "0", "301", "-301", "0.00", "3.01", "-3.01"],
        [CLEARING, "1301", "0", "1301", "13.01", "0.00", "13.01"],
        ["total", "1301", "1301", "0", "13.01", "13.01", "0.00"],
    ]
    one_day = cli(config, "balance", "--day", "2026-11-26")
    assert table(one_day.stdout)[1:] == [
        ["arrears_receivable:rider-8", "0", "301", "-301", "0.00", "3.01", "-3.01"],
        [CLEARING, "301", "0", "301", "3.01", "0.00", "3.01"],
        ["total", "301", "301", "0", "3.01", "3.01", "0.00"],
    ]
    riders = cli(config, "balance", "--account", "arrears_receivable")
    assert [row[0] for row in table(riders.stdout)[1:]] == [
        "arrears_receivable:rider-7", "arrears_receivable:rider-8", "total"]


def test_ledger_balance_json(two_days: Path) -> None:
    config = two_days
    result = cli(config, "balance", "--json", "--account", "wechat_clearing", "--day",
                 "2026-11-25")
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout) == [{
        "account": CLEARING, "day": "2026-11-25", "debit_fen": 1000, "credit_fen": 0,
        "balance_fen": 1000, "debit_yuan": "10.00", "credit_yuan": "0.00",
        "balance_yuan": "10.00",
    }]
    nothing = cli(config, "balance", "--json", "--day", "2026-01-01")
    assert (nothing.returncode, nothing.stdout) == (0, "")


def test_ledger_export_csv(two_days: Path, tmp_path: Path) -> None:
    config = two_days
    output = tmp_path / "ledger.csv"
    result = cli(config, "export", "--from", "2026-11-25", "--to", "2026-11-25",
                 "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "6 line(s) of 2026-11-25..2026-11-25" in result.stderr
    rows = list(csv.reader(io.StringIO(output.read_text(encoding="utf-8"), newline="")))
    assert rows[0] == ["day", "time_end", "mch_id", "transaction_id", "repay_no", "order_no",
                       "entry_id", "line_no", "account", "debit_fen", "credit_fen",
                       "debit_yuan", "credit_yuan"]
    common = ["2026-11-25", "20261125093015", MCH_ID, "T1", "R1"]
    assert rows[1:] == [
        [*common, "A", "1", "1", CLEARING, "334", "0", "3.34", "0.00"],
        [*common, "A", "1", "2", "arrears_receivable:rider-7", "0", "334", "0.00", "3.34"],
        [*common, "B", "1", "3", CLEARING, "333", "0", "3.33", "0.00"],
        [*common, "B", "1", "4", "arrears_receivable:rider-7", "0", "333", "0.00", "3.33"],
        [*common, "C", "1", "5", CLEARING, "333", "0", "3.33", "0.00"],
        [*common, "C", "1", "6", "arrears_receivable:rider-7", "0", "333", "0.00", "3.33"],
    ]
    both = cli(config, "export", "--from", "2026-11-25", "--to", "2026-11-26")
    rows = list(csv.reader(io.StringIO(both.stdout)))
    assert len(rows) == 1 + 6 + 4
    assert sum(int(r[9]) for r in rows[1:]) == sum(int(r[10]) for r in rows[1:]) == 1301
    assert rows[-1][:9] == ["2026-11-26", "20261126003000", MCH_ID, "T2", "R2", "E", "2", "4",
                            "arrears_receivable:rider-8"]


def test_the_commands_read_while_a_writer_holds_the_store(
    two_days: Path, books_url: str
) -> None:
    """Read-only, with no write lock: they answer while another connection holds it."""
    with holding_the_books(books_url):
        result = cli(two_days, "balance", "--json", "--account", "wechat_clearing")
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[0]["debit_fen"] == 1301


@contextmanager
def holding_the_books(url: str) -> Iterator[None]:
    """Another connection in the midst of writing the books, its change never committed:
    SQLite's write lock; on PostgreSQL, the lines' rows and every writer's lock on them."""
    if is_postgres(url):
        with psycopg.connect(url) as pg:  # a transaction, rolled back on leaving
            pg.execute("LOCK TABLE ledger_lines IN EXCLUSIVE MODE")
            pg.execute("DELETE FROM ledger_lines")
            yield
            pg.rollback()
        return
    path = url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM ledger_lines")  # not committed: never seen
        try:
            yield
        finally:
            writer.execute("ROLLBACK")


def test_command_errors_say_what_to_do(config: Path, tmp_path: Path) -> None:
    missing = cli(config, "balance")
    assert missing.returncode != 0
    assert "no store at" in missing.stderr
    sqlite3.connect(tmp_path / "router.db").close()  # a store, but no ledger in it
    bare = cli(config, "overpayments")
    assert bare.returncode != 0
    assert "has no ledger books: the router creates them when it starts with [plugins.ledger]" \
        in bare.stderr
    backwards = cli(config, "export", "--from", "2026-11-26", "--to", "2026-11-25")
    assert "--from 2026-11-26 is after --to 2026-11-25" in backwards.stderr
    bad_day = cli(config, "balance", "--day", "25/11/2026")
    assert bad_day.returncode == 2
    assert "not a day (YYYY-MM-DD)" in bad_day.stderr


def test_command_errors_on_postgresql_say_what_to_do(
    tmp_path: Path, arrears_merchant: MerchantConfig,
) -> None:
    with postgres_schema() as url:  # a store, but no ledger in it
        bare = cli(config_file(tmp_path / "bare.toml", url, arrears_merchant), "balance")
    assert bare.returncode != 0
    assert ("ledger: the PostgreSQL store has no ledger books: the router creates them when"
            " it starts with [plugins.ledger]") in bare.stderr
    down = "postgresql://books:s3cret@127.0.0.1:1/arrears"  # nothing listens on port 1
    gone = cli(config_file(tmp_path / "down.toml", down, arrears_merchant), "overpayments")
    assert gone.returncode != 0
    assert "ledger: cannot open the PostgreSQL store read-only for the ledger" in gone.stderr
    assert "s3cret" not in gone.stderr
