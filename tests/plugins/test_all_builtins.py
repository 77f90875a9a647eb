"""All four built-in plugins in one real router process, against real local servers:
200 payments, each sent twice, reach every plugin exactly once, and sms waits for unlock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from tests.harness import RouterProcess, cli_json, wait_until, write_config
from tests.plugins.conftest import RecordingServer

COUNT = 200
SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldC1ub3QtZm9yLXByb2Q="


@pytest.fixture
def servers() -> Iterator[dict[str, RecordingServer]]:
    started = {name: RecordingServer() for name in ("accounts", "sms", "crm")}
    yield started
    for server in started.values():
        server.close()


def plugin_tables(servers: dict[str, RecordingServer]) -> dict[str, dict[str, Any]]:
    return {
        "ledger": {},
        "unlock": {"url": f"{servers['accounts'].url}/riders/{{out_user_id}}/unblock",
                   "concurrency": 16},
        "sms": {"after": ["unlock"], "phones": {"rider-0001": "+8613800000000"},
                "rate_limit": 1000.0, "concurrency": 16,
                "provider": {"type": "http", "url": f"{servers['sms'].url}/send"}},
        "webhook": {"url": f"{servers['crm'].url}/hooks", "secrets": [SECRET],
                    "concurrency": 16},
    }


def test_every_payment_reaches_every_plugin_once(
    tmp_path: Path, servers: dict[str, RecordingServer],
    start_process: Callable[..., RouterProcess],
) -> None:
    config = write_config(tmp_path / "config.toml", plugins=plugin_tables(servers))
    router = start_process(config, "serve", "--port", "0")
    sent = cli_json("simulate", "--count", str(COUNT), "--duplicate", "--concurrency", "16",
                    "--url", router.url + "/ridecode/arrears", config=config)
    assert [o["errcode"] for o in sent] == [0] * (2 * COUNT)
    paid = {o["transaction_id"] for o in sent}
    assert len(paid) == COUNT

    def all_done() -> bool:
        states = {s["name"]: s for s in cli_json("plugins", "list", config=config)}
        return all(s["done"] == COUNT and s["pending"] == 0 for s in states.values())

    wait_until(all_done, f"{COUNT} deliveries done for each plugin", timeout=120)
    router.stop()

    unlocks = servers["accounts"].requests
    assert sorted(r.headers["idempotency-key"] for r in unlocks) == sorted(
        f"m1:{tx}:unlock" for tx in paid)  # every rider unlocked once

    books = sqlite3.connect(tmp_path / "router.db")
    assert books.execute("SELECT count(*) FROM ledger_entries").fetchone() == (COUNT,)
    debits, credits = books.execute(
        "SELECT sum(debit_fen), sum(credit_fen) FROM ledger_lines").fetchone()
    assert debits == credits == COUNT * 300

    texts = servers["sms"].requests
    assert len(texts) == COUNT
    unlocked_at = {r.headers["idempotency-key"].split(":")[1]: r.at for r in unlocks}
    for text in texts:
        transaction_id = text.headers["idempotency-key"].split(":")[1]
        assert text.at > unlocked_at[transaction_id]  # the receipt only after the unlock
        assert text.json()["phone"] == "+8613800000000"

    hooks = servers["crm"].requests
    assert len(hooks) == COUNT
    verifier = StandardWebhook(SECRET)
    forwarded = {verifier.verify(hook.body, hook.headers)["data"]["transaction_id"]
                 for hook in hooks}
    assert forwarded == paid
