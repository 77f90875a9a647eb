"""Looking at what the store keeps, as an operator does: a payment with its deliveries, one
payment's deliveries, one quarantined request whole, and what the quarantine only counted.
Text shows times in CST with their offset; ``--json`` is the records as they are encoded."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arrears_router.store import (
    ClaimLimit,
    DeliveryResult,
    DeliveryStatus,
    Mode,
    PluginRoute,
    QuarantineBounds,
)
from arrears_router.store.sqlite import SqliteStore
from tests.harness import PYTHON_M, cli, cli_json, write_config
from tests.store.records import entry, event, payment

RECEIVED = datetime(2026, 11, 25, 1, 0, 5, tzinfo=UTC)
SHOWN = "2026-11-25 09:00:05+08:00"
BODY = b'{"appid":"wx1",  "mch_id":"m1", "note":"\xff not UTF-8"}'
"""A quarantined body as received: odd spacing, and bytes that are no text."""


async def fill(path: Path) -> None:
    """T1 and T2 with deliveries to ledger and sms (T1's ledger one done), one request kept
    in quarantine and one only counted (a bound of one new request a minute)."""
    store = SqliteStore(str(path), bounds=QuarantineBounds(new_per_minute=1))
    await store.open()
    await store.sync_plugins([PluginRoute("ledger", Mode.ENABLED),
                              PluginRoute("sms", Mode.ENABLED)])
    await store.accept(event(payment("T1")))
    await store.accept(event(payment("T2")))
    claimed = await store.claim({"ledger": ClaimLimit(10, 60.0)})
    [t1_ledger] = [d for d in claimed if d.payment.transaction_id == "T1"]
    await store.finish([DeliveryResult(id=t1_ledger.id, token=t1_ledger.token,
                                       status=DeliveryStatus.DONE, note="booked")])
    await store.quarantine(entry(BODY, received_at=RECEIVED))
    await store.quarantine(entry(b"{}", 40004, received_at=RECEIVED))
    await store.close()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    asyncio.run(fill(folder / "router.db"))
    return write_config(folder / "config.toml")


def run_bytes(*args: str, config: Path) -> subprocess.CompletedProcess[bytes]:
    """As ``harness.cli``, but its output as bytes: a body as received need not be text."""
    return subprocess.run([*PYTHON_M, *args, "--config", str(config)], capture_output=True,
                          env=os.environ.copy(), timeout=120, check=False)


def test_events_show_lists_the_payments_deliveries(config: Path) -> None:
    result = cli("events", "show", "T1", config=config, check=True)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("payment 1, received ") and lines[0].endswith("+08:00")
    assert "  transaction_id  T1" in lines
    assert "  paid_at         2026-11-25 09:30:15+08:00" in lines
    deliveries = lines[lines.index("deliveries") + 2:]
    assert [line.split()[1:4] for line in deliveries] == [
        ["ledger", "done", "1"], ["sms", "pending", "0"]]
    assert deliveries[0].endswith("booked")
    assert all("T2" not in line for line in deliveries)

    # JSON: the record as `events list` has it; its deliveries are a command of their own.
    [shown] = cli_json("events", "show", "T1", config=config)
    assert shown == cli_json("events", "list", config=config)[-1]


def test_deliveries_list_by_transaction_id(config: Path) -> None:
    listed = cli_json("deliveries", "list", "--transaction-id", "T1", config=config)
    assert [(d["plugin"], d["transaction_id"]) for d in listed] == [("sms", "T1"), ("ledger", "T1")]
    done = cli_json("deliveries", "list", "--transaction-id", "T1", "--status", "done",
                    config=config)
    assert [d["plugin"] for d in done] == ["ledger"]
    text = cli("deliveries", "list", "--transaction-id", "T2", "--plugin", "sms",
               config=config, check=True).stdout.splitlines()
    assert text[0].split() == ["id", "plugin", "status", "tries", "updated", "transaction_id",
                               "note/error"]
    [row] = text[1:]
    assert row.split()[1:3] == ["sms", "pending"] and "+08:00" in row and "T2" in row
    assert cli_json("deliveries", "list", "--transaction-id", "T404", config=config) == []


def test_quarantine_show_one_request_whole_its_body_as_received(config: Path) -> None:
    [first] = [r for r in cli_json("quarantine", "list", config=config)
               if r["errcode"] == 40005]
    result = run_bytes("quarantine", "show", str(first["id"]), config=config)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"body: %d bytes, as received:\n" % len(BODY))
    assert body == BODY + b"\n"
    fields = head.decode().splitlines()
    assert fields[0] == f"quarantined request {first['id']}"
    for line in ("  errcode         40005", "  reason          why", "  mch_id          m1",
                 "  transaction_id  -", "  hits            1",
                 f"  first_seen_at   {SHOWN}", f"  last_seen_at    {SHOWN}"):
        assert line in fields

    [record] = cli_json("quarantine", "show", str(first["id"]), config=config)
    assert base64.b64decode(record["body"]) == BODY
    assert record["first_seen_at"] == "2026-11-25T01:00:05Z"

    missing = cli("quarantine", "show", "999", config=config)
    assert (missing.returncode, missing.stderr.strip()) == (1, "no quarantined request 999")


def test_what_the_quarantine_only_counted_is_shown(config: Path) -> None:
    listing = cli("quarantine", "list", config=config, check=True).stdout.splitlines()
    assert len(listing) == 3  # the header, the request kept, and what was not
    assert listing[-1].startswith("and 1 request(s) only counted, not kept")

    stats = cli("quarantine", "stats", config=config, check=True).stdout.splitlines()
    assert stats[0] == f"kept: 1 request(s), {len(BODY)} bytes of bodies, 1 arrival(s)"
    assert stats[-1].split() == ["wx1", "m1", "40004", "rate", "1",
                                 *SHOWN.split(), *SHOWN.split()]
    [counted] = cli_json("quarantine", "stats", config=config)
    assert counted["overflow"] == [{
        "appid": "wx1", "mch_id": "m1", "errcode": 40004, "bound": "rate", "count": 1,
        "first_at": "2026-11-25T01:00:05Z", "last_at": "2026-11-25T01:00:05Z"}]
