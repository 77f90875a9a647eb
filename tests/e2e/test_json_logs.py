"""``[log] format = "json"``, end to end: every line of every process is one JSON object with
its stable keys, and no key, phone number or whole openid is in any of them, whatever a
plugin logs (``leaky_plugin``) and whatever the traffic (good, refused, quarantined, retried,
dead)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from arrears_router.config import load_config
from arrears_router.wire.notifier import Notifier, sample_payload
from arrears_router.wire.signature import SignType
from tests.harness import RouterProcess, cli_json, wait_until, write_config

from .conftest import HMAC_MERCHANT, MD5_MERCHANT

OPENID = sample_payload("TX")["openid"]
PHONE = "13912345678"
TOKEN = "sms-api-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
ADMIN = {"port": 0, "tokens": [{"name": "ops-alice", "scope": "operate", "token": ADMIN_TOKEN}]}
PREVIOUS_KEYS = {"sign_key": "e2ePreviousSignKey0123456789abcd",
                 "aes_key": "hex:000102030405060708090a0b0c0d0e0f"}
SECRETS = [HMAC_MERCHANT["sign_key"], HMAC_MERCHANT["aes_key"], MD5_MERCHANT["sign_key"],
           MD5_MERCHANT["aes_key"], MD5_MERCHANT["aes_key"].removeprefix("base64:"),
           PREVIOUS_KEYS["sign_key"], PREVIOUS_KEYS["aes_key"].removeprefix("hex:"), TOKEN,
           ADMIN_TOKEN]
# Any mainland mobile number, however written; any openid-shaped run.
ANY_PHONE = re.compile(r"(?<![\d+])(?:\+?86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)")
ANY_OPENID = re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])")
BASE_KEYS = {"time", "level", "logger", "message", "pid"}
DELIVERY_KEYS = {"plugin", "delivery_id", "attempt", "mch_id", "transaction_id"}

encode = msgspec.json.encode


def traffic(url: str, config: Path) -> dict[str, int]:
    """Good, duplicate, conflicting, forged, unknown, undecryptable and invalid notifications;
    the errcode each was answered."""
    merchants = load_config(config).merchants
    hmac, md5 = Notifier(merchants[0]), Notifier(merchants[1], SignType.MD5)
    bodies = {
        "TX-LOG-OK": hmac.notification(sample_payload("TX-LOG-OK")),
        "TX-LOG-MD5": md5.notification(sample_payload("TX-LOG-MD5")),
        "TX-LOG-RETRY": hmac.notification(sample_payload("TX-LOG-RETRY")),
        "TX-LOG-DEAD": hmac.notification(sample_payload("TX-LOG-DEAD")),
        "duplicate": hmac.notification(sample_payload("TX-LOG-OK")),
        "conflict": hmac.notification(sample_payload("TX-LOG-OK", total_fee=301)),
        "forged": encode({**hmac.signed(hmac.envelope(encode(sample_payload("TX-LOG-FORGED")))),
                          "sign": "0" * 64}),
        # Its refusal quotes the appid and mch_id sent: a stranger's, here an openid and a phone.
        "unknown": hmac.notification(sample_payload("TX-LOG-UNKNOWN"), appid=OPENID,
                                     mch_id="15000001234"),
        "not json": b"phone " + PHONE.encode() + b" openid " + OPENID.encode(),
        "undecryptable": encode(hmac.signed(hmac.envelope(b"{}", encrypted_data="not*base64"))),
        "invalid": hmac.notification(sample_payload("TX-LOG-INVALID", total_fee=PHONE)),
    }
    with httpx.Client(timeout=30) as client:
        return {name: client.post(url, content=body).json()["errcode"]
                for name, body in bodies.items()}


def admin_traffic(admin_url: str) -> None:
    """What an operator does through the admin listener, a wrong token and a re-ingest of a
    quarantined request (refused again, and logged again) among it."""
    with httpx.Client(base_url=f"{admin_url}/admin/api/v1", timeout=30,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        assert client.get("/plugins").status_code == 200
        assert client.get("/payments", params={"transaction_id": "TX-LOG-OK"}).status_code == 200
        quarantined = client.get("/quarantine").json()["items"]
        for entry in quarantined:
            assert client.post(f"/quarantine/{entry['id']}/reingest").status_code == 200
        wrong = client.get("/plugins", headers={"Authorization": f"Bearer {SECRETS[0]}"})
        assert wrong.status_code == 401
        assert client.get(f"{admin_url}/metrics").status_code == 200


def statuses(config: Path) -> dict[str, str]:
    return {d["transaction_id"]: d["status"]
            for d in cli_json("deliveries", "list", "--plugin", "leaky", config=config)}


def lines_of(process: RouterProcess) -> list[dict[str, Any]]:
    """Every line of its standard error, each of which must be one JSON object."""
    lines = []
    for number, line in enumerate(process.log_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"{process.command}, line {number}, is not JSON: {line!r}"
                                 ) from None
        assert isinstance(record, dict) and record.keys() >= BASE_KEYS, line
        assert datetime.fromisoformat(record["time"]).utcoffset() is not None, line
        lines.append(record)
    return lines


def one(records: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    """The first record whose keys hold ``match`` (a callable value: a test of the value)."""
    def fits(record: dict[str, Any]) -> bool:
        return all(key in record and (want(record[key]) if callable(want) else
                                      record[key] == want) for key, want in match.items())
    found = [record for record in records if fits(record)]
    assert found, f"no line with {match}"
    return found[0]


def contains(text: str) -> Callable[[str], bool]:
    return lambda value: text in value


@pytest.mark.parametrize("processes", [("serve",), ("serve --no-dispatch", "worker")],
                         ids=["serve", "serve+worker"])
def test_json_logs_carry_their_keys_and_no_secret_phone_or_openid(
    tmp_path: Path, start_process: Callable[..., RouterProcess], processes: tuple[str, ...],
) -> None:
    config = write_config(
        tmp_path / "config.toml", server={"port": 0}, log={"format": "json", "level": "debug"},
        merchants=[HMAC_MERCHANT, {**MD5_MERCHANT, "previous_keys": [PREVIOUS_KEYS]}],
        admin=ADMIN,
        plugins={"leaky": {"use": "tests.e2e.leaky_plugin:Leaky", "max_attempts": 3,
                           "api_token": TOKEN, "say": HMAC_MERCHANT["sign_key"],
                           "phone": PHONE}},
    )
    started = [start_process(config, *command.split(), "--port", "0")
               if command.startswith("serve") else start_process(config, command)
               for command in processes]
    answered = traffic(started[0].url + "/ridecode/arrears", config)

    assert answered == {"TX-LOG-OK": 0, "TX-LOG-MD5": 0, "TX-LOG-RETRY": 0, "TX-LOG-DEAD": 0,
                        "duplicate": 0, "conflict": 40009, "forged": 40003, "unknown": 40002,
                        "not json": 40001, "undecryptable": 40004, "invalid": 40005}
    settled = {"TX-LOG-OK": "done", "TX-LOG-MD5": "done", "TX-LOG-RETRY": "done",
               "TX-LOG-DEAD": "dead"}
    wait_until(lambda: statuses(config) == settled, "every delivery done, or dead")
    wait_until(lambda: all(p.logged("gave up on") for p in started[-1:]), "the dead announced")
    admin_traffic(started[0].admin_url)
    for process in reversed(started):
        assert process.stop() == 0
    records = {p.command: lines_of(p) for p in started}

    text = "\n".join(p.log_text() + p.out.read_text() for p in started)
    for secret in SECRETS:
        assert secret not in text
    assert ANY_PHONE.findall(text) == []
    assert ANY_OPENID.findall(text) == []
    assert "oRid****0001" in text and "139****5678" in text  # masked, not dropped

    serving, delivering = records[started[0].command], records[started[-1].command]
    assert len({r["pid"] for r in serving}) == 3  # the HTTP process, its engine, the admin one
    # The intake's lines: each request's own id, its errcode, its merchant once known.
    one(serving, errcode=40002, message=contains("appid 'oRid****0001' with mch_id '150****1234'"))
    refused = one(serving, logger="arrears_router.intake", errcode=40003)
    assert refused["level"] == "info" and re.fullmatch(r"[0-9a-f]{12}", refused["request_id"])
    quarantined = one(serving, errcode=40004, mch_id=HMAC_MERCHANT["mch_id"])
    assert quarantined["request_id"] != refused["request_id"]
    one(serving, errcode=40005, transaction_id="TX-LOG-INVALID", request_id=contains(""))
    one(serving, errcode=40009, transaction_id="TX-LOG-OK", mch_id=HMAC_MERCHANT["mch_id"])
    accepted = one(serving, level="debug", errcode=0, transaction_id="TX-LOG-MD5")
    assert accepted["mch_id"] == MD5_MERCHANT["mch_id"] and accepted["duration_s"] >= 0
    # What is logged in a delivery, by the plugin or a library it calls, says which.
    said = one(delivering, logger="arrears_router.plugin.leaky", transaction_id="TX-LOG-OK")
    assert said.keys() >= DELIVERY_KEYS and said["plugin"] == "leaky"
    assert said["attempt"] == 1 and said["mch_id"] == HMAC_MERCHANT["mch_id"]
    assert "signing with **** and ****" in said["message"]
    vendor = one(delivering, logger="vendor_sms_sdk", transaction_id="TX-LOG-OK")
    assert vendor.keys() >= DELIVERY_KEYS
    assert "sms:****@" in vendor["message"] and "access_token=****" in vendor["message"]
    traceback = one(delivering, message="lookup failed", transaction_id="TX-LOG-OK")
    # The plugin's `phone` setting is a configured secret: masked whole, as its keys are.
    assert traceback["exception"].endswith("ValueError: bad number **** for oRid****0001, key ****")
    retried = one(delivering, logger="arrears_router.dispatch", transaction_id="TX-LOG-RETRY",
                  attempt=1)
    assert retried["duration_s"] >= 0 and "busy sending to ****" in retried["message"]
    one(delivering, transaction_id="TX-LOG-RETRY", attempt=2, message=contains("done"))
    dead = one(delivering, level="error", logger="arrears_router.dispatch",
               transaction_id="TX-LOG-DEAD", message=contains("is dead"))
    assert DELIVERY_KEYS | {"duration_s"} <= dead.keys()
    one(delivering, message=contains("gave up on oRid****0001"), transaction_id="TX-LOG-DEAD")

