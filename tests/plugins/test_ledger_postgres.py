"""The ledger on PostgreSQL, where several processes book into one database at once: many
connections booking the same payments and two payments of one repay_no at the same moment,
bounded waits, a lost connection, and two router processes sharing a store end to end.

Skipped where ``$ARREARS_ROUTER_TEST_POSTGRES`` is unset (tests/harness.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import msgspec
import psycopg
import pytest

from arrears_router import RetryableError
from arrears_router.config import MerchantConfig
from arrears_router.plugins.ledger import Ledger, open_books
from arrears_router.plugins.ledger_books import Booked, Books
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import (
    MERCHANT,
    RouterProcess,
    cli_json,
    postgres_schema,
    wait_until,
    write_config,
)
from tests.plugins.test_ledger import MCH_ID, delivery, execute, payment, started

CONNECTIONS = 8
"""Books at once: each its own connection, as each router process has its own."""
ROUNDS = 10


def test_many_connections_book_each_payment_once_and_flag_one_overpayment() -> None:
    """Each round, every connection books the same three payments at the same moment, in
    an order of its own: one payment alone, and two (A, B) of one repay_no."""
    ledger = Ledger(Ledger.Settings())
    with postgres_schema() as url:
        books = [open_books(url, busy_timeout=5.0) for _ in range(CONNECTIONS)]
        try:
            for round_no in range(ROUNDS):
                results = _book_at_once(books, ledger, round_no)
                _check_round(url, round_no, results)
        finally:
            for one in books:
                one.close()
        _check_balanced(url)


def _book_at_once(books: list[Books], ledger: Ledger, round_no: int
                  ) -> list[tuple[str, Booked]]:
    pays = [payment(f"S{round_no}", repay_no=f"RS{round_no}"),
            payment(f"A{round_no}", repay_no=f"R{round_no}", total_fee=1001,
                    orders=("x", "y", "z")),
            payment(f"B{round_no}", repay_no=f"R{round_no}", total_fee=500)]
    gate = threading.Barrier(len(books))

    def book_all(number: int) -> list[tuple[str, Booked]]:
        order = pays[number % 3:] + pays[:number % 3]
        gate.wait()
        return [(pay.transaction_id,
                 books[number].book(ledger.entry(pay, number), f"round {round_no}"))
                for pay in order]

    with ThreadPoolExecutor(len(books)) as pool:
        return [booked for done in pool.map(book_all, range(len(books))) for booked in done]


def _check_round(url: str, round_no: int, results: list[tuple[str, Booked]]) -> None:
    single, first, second = f"S{round_no}", f"A{round_no}", f"B{round_no}"
    new = Counter(transaction_id for transaction_id, booked in results if booked.new)
    assert new == {single: 1, first: 1, second: 1}, results  # each booked by one connection
    entries = execute(url, "SELECT transaction_id, count(*) FROM ledger_entries"
                      " WHERE transaction_id IN (?, ?, ?) GROUP BY transaction_id",
                      single, first, second)
    assert sorted(entries) == sorted([(single, 1), (first, 1), (second, 1)])
    # Whichever of A and B was booked second is the overpayment, named by every delivery of
    # it; the other, and the payment alone, by none.
    flagged = execute(url, """
        SELECT e.transaction_id, f.transaction_id FROM ledger_overpayments o
        JOIN ledger_entries e ON e.id = o.entry_id
        JOIN ledger_entries f ON f.id = o.first_entry_id
        WHERE e.repay_no IN (?, ?)""", f"R{round_no}", f"RS{round_no}")
    assert len(flagged) == 1, flagged
    [(again, earlier)] = flagged
    assert {again, earlier} == {first, second}
    for transaction_id, booked in results:
        expected = earlier if transaction_id == again else None
        assert booked.first_transaction_id == expected, (transaction_id, booked)


def _check_balanced(url: str) -> None:
    [(debits, credits, lines)] = execute(
        url, "SELECT sum(debit_fen), sum(credit_fen), count(*) FROM ledger_lines")
    assert debits == credits == ROUNDS * (300 + 1001 + 500)
    assert lines == ROUNDS * 2 * (1 + 3 + 1)
    by_entry = execute(url, "SELECT entry_id FROM ledger_lines GROUP BY entry_id"
                            " HAVING sum(debit_fen) <> sum(credit_fen)")
    assert by_entry == []


def test_a_booking_waits_for_a_lock_no_longer_than_busy_timeout() -> None:
    with postgres_schema() as url:
        plugin = started(url, busy_timeout=0.3)
        pay = payment("T1")
        try:
            with psycopg.connect(url) as other:  # booking T1 itself, not yet committed
                other.execute(
                    "INSERT INTO ledger_entries (mch_id, transaction_id, repay_no, total_fee,"
                    " time_end, day, booked_at, delivery_id)"
                    " VALUES (%s, 'T1', 'R1', 300, '', '', '', 0)", (MCH_ID,))
                began = time.monotonic()
                with pytest.raises(RetryableError, match="lock timeout"):
                    plugin.arrears_paid(pay, delivery(1, pay, plugin))
                assert time.monotonic() - began < 2.0
                other.rollback()
            # Retried once the other is gone: booked, whole.
            assert plugin.arrears_paid(pay, delivery(1, pay, plugin)).startswith("booked entry")
        finally:
            plugin.router_stopping()


def test_a_lost_connection_is_made_again_for_the_next_booking() -> None:
    with postgres_schema() as base:
        name = f"ledger-test-{time.monotonic_ns()}"
        url = f"{base}&application_name={name}"  # a URL's options win over the kit's
        plugin = started(url)
        try:
            with psycopg.connect(base, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE application_name = %s", (name,))
            notes = []
            for attempt in range(1, 3):  # the dispatcher's retries
                pay = payment("T1")
                try:
                    notes.append(plugin.arrears_paid(pay, delivery(attempt, pay, plugin)))
                    break
                except RetryableError as exc:
                    notes.append(str(exc))
            assert notes[-1] == "booked entry 1: 300 fen, 1 line pair(s)", notes
        finally:
            plugin.router_stopping()


# -- end to end


def test_two_router_processes_on_one_postgresql_book_every_payment_once(
    tmp_path: Path, start_process: Callable[..., RouterProcess],
) -> None:
    """serve and a worker share the store and both run the ledger: every payment, each sent
    twice, and two payments of one repay_no sent at the same moment."""
    count = 30
    with postgres_schema() as url:
        config = write_config(tmp_path / "config.toml", store={"url": url},
                              plugins={"ledger": {"concurrency": 8}})
        router = start_process(config, "serve", "--port", "0")
        start_process(config, "worker")
        sent = cli_json("simulate", "--count", str(count), "--duplicate", "--concurrency", "8",
                        "--url", f"{router.url}/ridecode/arrears", config=config)
        assert [reply["errcode"] for reply in sent] == [0] * (2 * count)
        _pay_twice_at_once(router.url)

        def all_done() -> bool:
            [ledger] = [state for state in cli_json("plugins", "list", config=config)
                        if state["name"] == "ledger"]
            return bool(ledger["done"] == count + 2 and ledger["pending"] == 0)

        wait_until(all_done, f"{count + 2} ledger deliveries done", timeout=60)
        balances = cli_json("ledger", "balance", config=config)
        overpaid = cli_json("ledger", "overpayments", config=config)

    clearing = [b for b in balances if b["account"].startswith("wechat_clearing:")]
    assert [(b["account"], b["debit_fen"]) for b in clearing] == [
        ("wechat_clearing:m1", count * 300 + 2 * 700)]
    assert sum(b["debit_fen"] for b in balances) == sum(b["credit_fen"] for b in balances)
    assert [(o["repay_no"], {o["transaction_id"], o["first_transaction_id"]})
            for o in overpaid] == [("R-twice", {"T-twice-1", "T-twice-2"})]


def _pay_twice_at_once(url: str) -> None:
    """Two transactions paying one repay_no, sent together: both are booked, one flagged."""
    notifier = Notifier(msgspec.convert(MERCHANT, MerchantConfig))
    bodies = [notifier.notification(sample_payload(f"T-twice-{n}", repay_no="R-twice",
                                                   total_fee=700))
              for n in (1, 2)]
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(
            lambda body: client.post(f"{url}/ridecode/arrears", content=body), bodies))
    assert [reply.json()["errcode"] for reply in replies] == [0, 0]

