"""All four built-in plugins in one real router process, against real local servers:
200 payments, each sent twice, reach every plugin exactly once, and sms waits for unlock.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook

from tests.platform.live import MERCHANT, Process, cli, wait_until
from tests.plugins.conftest import RecordingServer

COUNT = 200
SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldC1ub3QtZm9yLXByb2Q="


@pytest.fixture
def servers() -> Iterator[dict[str, RecordingServer]]:
    started = {name: RecordingServer() for name in ("accounts", "sms", "crm")}
    yield started
    for server in started.values():
        server.close()


def config_text(servers: dict[str, RecordingServer]) -> str:
    return MERCHANT + f'''
[plugins.ledger]

[plugins.unlock]
url = "{servers["accounts"].url}/riders/{{out_user_id}}/unblock"
concurrency = 16

[plugins.sms]
after = ["unlock"]
phones = {{ "rider-0001" = "+8613800000000" }}
rate_limit = 1000.0
concurrency = 16
provider = {{ type = "http", url = "{servers["sms"].url}/send" }}

[plugins.webhook]
url = "{servers["crm"].url}/hooks"
secrets = ["{SECRET}"]
concurrency = 16
'''


def test_every_payment_reaches_every_plugin_once(
    tmp_path: Path, servers: dict[str, RecordingServer]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text(servers))
    router = Process(config, "serve", "--port", "0")
    try:
        sent = cli(config, "simulate", "--count", str(COUNT), "--duplicate", "--concurrency", "16",
                   "--url", router.url + "/ridecode/arrears")
        assert [o["errcode"] for o in sent] == [0] * (2 * COUNT)
        paid = {o["transaction_id"] for o in sent}
        assert len(paid) == COUNT

        def all_done() -> bool:
            states = {s["name"]: s for s in cli(config, "plugins", "list")}
            return all(s["done"] == COUNT and s["pending"] == 0 for s in states.values())

        wait_until(all_done, f"{COUNT} deliveries done for each plugin", timeout=120)
    finally:
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
