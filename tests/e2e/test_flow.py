"""The documented flow and every errcode, over HTTP against the real server process."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import msgspec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from arrears_router.config import MerchantConfig
from arrears_router.wire.cipher import parse_aes_key
from arrears_router.wire.notifier import Notifier, sample_payload
from arrears_router.wire.signature import SignType

from .conftest import Router

encode = msgspec.json.encode


def _quarantine_entry(router: Router, body: bytes) -> dict[str, Any]:
    """The quarantine record keeping exactly this request body."""
    entries = [e for e in router.quarantined() if base64.b64decode(e["body"]) == body]
    assert len(entries) == 1, entries
    return entries[0]


def _store_counts(router: Router) -> tuple[int, int]:
    """(events, quarantined) rows, read straight from the SQLite file."""
    with closing(sqlite3.connect(router.store_path)) as db:
        (events,) = db.execute("SELECT count(*) FROM events").fetchone()
        (quarantined,) = db.execute("SELECT count(*) FROM quarantine").fetchone()
    return events, quarantined


# -- the documented flow


def test_accepted_notification_is_acknowledged_and_listed_with_its_decoded_fields(
    router: Router,
) -> None:
    payload = sample_payload("4200000000202611250000000001")
    fields = router.hmac.signed(router.hmac.envelope(encode(payload)))

    reply = router.post(encode(fields))

    assert reply == {"errcode": 0, "errmsg": "ok", "nonce_str": fields["nonce_str"]}
    expected = {
        **payload,
        "appid": router.hmac.appid,
        "mch_id": router.hmac.mch_id,
        "paid_at": "2026-11-25T09:30:15+08:00",  # time_end read as China Standard Time
    }
    (listed,) = router.events()
    assert listed["payment"] == expected
    (shown,) = router.event(payload["transaction_id"])
    assert shown == listed


def test_md5_merchant_accepts_md5_and_hmac_signs_and_events_keep_their_merchant(
    router: Router,
) -> None:
    assert router.post(router.md5.notification(sample_payload("TX-MD5")))["errcode"] == 0
    assert router.post(router.md5_hmac.notification(sample_payload("TX-HMAC")))["errcode"] == 0

    for transaction_id in ("TX-MD5", "TX-HMAC"):
        (event,) = router.event(transaction_id)
        assert event["payment"]["appid"] == router.md5.appid
        assert event["payment"]["mch_id"] == router.md5.mch_id


def test_a_retry_with_fresh_nonce_and_iv_is_acknowledged_and_stored_once(router: Router) -> None:
    payload = sample_payload("TX-RETRY")
    first = router.post(router.hmac.notification(payload))
    retry_fields = router.hmac.signed(router.hmac.envelope(encode(payload)))
    retry = router.post(encode(retry_fields))

    assert first["errcode"] == 0
    assert retry["errcode"] == 0
    assert retry["nonce_str"] == retry_fields["nonce_str"]
    assert len(router.event("TX-RETRY")) == 1
    assert router.quarantined() == []


def test_fields_added_later_by_wechat_are_signed_and_accepted(router: Router) -> None:
    body = router.hmac.notification(sample_payload("TX-EXT"), sign_type="HMAC-SHA256",
                                    retry_count=0)
    assert router.post(body)["errcode"] == 0

    unsigned_addition = json.loads(router.hmac.notification(sample_payload("TX-EXT2")))
    unsigned_addition["added_after_signing"] = "x"
    reply = router.post(encode(unsigned_addition))
    assert reply["errcode"] == 40003
    assert router.event("TX-EXT2") == []


def test_healthz_and_readyz(router: Router) -> None:
    health = router.http.get(router.base_url + "/healthz")
    ready = router.http.get(router.base_url + "/readyz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_the_callback_takes_only_post(router: Router) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = router.http.request(method, router.callback_url)
        assert answer.status_code == 405
        assert answer.json() == {"detail": "the callback takes POST"}
    assert _store_counts(router) == (0, 0)


def test_simulate_with_duplicates_and_tampering_stores_each_payment_once(router: Router) -> None:
    outcomes = router.cli_json("simulate", "--url", router.callback_url, "--count", "20",
                               "--duplicate", "--tamper")
    assert len(outcomes) == 60
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for outcome in outcomes:
        by_kind.setdefault(outcome["sent"], []).append(outcome)
    assert {o["errcode"] for o in by_kind["original"] + by_kind["duplicate"]} == {0}
    assert {o["errcode"] for o in by_kind["tampered"]} == {40003}
    sent_ids = {o["transaction_id"] for o in by_kind["original"]}
    stored_ids = [e["payment"]["transaction_id"] for e in router.events()]
    assert len(stored_ids) == 20
    assert set(stored_ids) == sent_ids


# -- the seed's quirks


SEED_PAYLOAD: dict[str, Any] = {  # WeChat's documented example, in the seed's key case
    "out_user_id": "xxx",
    "openid": "1234",
    "bank_type": "LQT",
    "total_fee": 123,
    "transaction_id": "12312312",
    "time_end": "2020030319551111",
    "repay_No": "2020202202020",
    "order_No": ["123", "456"],
}


def test_seed_example_payload_is_accepted_with_its_quirks_resolved(router: Router) -> None:
    """Upper-case keys matched, 16-digit time_end kept raw, a missing `order` is empty."""
    reply = router.post(router.hmac.notification(SEED_PAYLOAD))

    assert reply["errcode"] == 0
    (event,) = router.event("12312312")
    payment = event["payment"]
    assert payment["repay_no"] == "2020202202020"
    assert payment["order_no"] == ["123", "456"]
    assert payment["time_end"] == "2020030319551111"
    assert payment["paid_at"] == "2020-03-03T19:55:11+08:00"
    assert payment["order"] == []
    assert payment["total_fee"] == 123


def test_upper_case_keys_inside_order_items_are_matched(router: Router) -> None:
    payload = {
        **SEED_PAYLOAD,
        "transaction_id": "TX-ORDER-CASE",
        "order": [{"order_No": "123", "attach": "a", "base64_qrcode": "cXI=",
                   "out_order_No": "BUS-1"}],
    }
    assert router.post(router.hmac.notification(payload))["errcode"] == 0
    (event,) = router.event("TX-ORDER-CASE")
    assert event["payment"]["order"] == [
        {"order_no": "123", "attach": "a", "base64_qrcode": "cXI=", "out_order_no": "BUS-1"}
    ]


def test_seed_example_request_without_sign_is_refused_with_40003(router: Router) -> None:
    fields = router.hmac.envelope(encode(SEED_PAYLOAD), nonce_str="abcdefg")  # no sign

    reply = router.post(encode(fields))

    assert reply["errcode"] == 40003
    assert "sign" in reply["errmsg"]
    assert reply["nonce_str"] == "abcdefg"
    assert _store_counts(router) == (0, 0)


# -- each errcode


def test_40001_body_not_json(router: Router) -> None:
    reply = router.post(b"appid=wx&mch_id=1")
    assert reply["errcode"] == 40001
    assert "nonce_str" not in reply


def test_40001_body_is_a_json_array(router: Router) -> None:
    body = b"[" + router.hmac.notification(sample_payload("TX-ARRAY")) + b"]"
    reply = router.post(body)
    assert reply["errcode"] == 40001
    assert "array" in reply["errmsg"]


def test_40001_missing_envelope_field_is_named_and_nonce_echoed(router: Router) -> None:
    fields = json.loads(router.hmac.notification(sample_payload("TX-NO-IV")))
    del fields["iv"]
    reply = router.post(encode(fields))
    assert reply["errcode"] == 40001
    assert "`iv`" in reply["errmsg"]
    assert reply["nonce_str"] == fields["nonce_str"]


def test_40001_envelope_field_of_wrong_type_is_named(router: Router) -> None:
    fields = json.loads(router.hmac.notification(sample_payload("TX-INT-MCH")))
    fields["mch_id"] = int(fields["mch_id"])
    reply = router.post(encode(fields))
    assert reply["errcode"] == 40001
    assert "$.mch_id" in reply["errmsg"]
    assert _store_counts(router) == (0, 0)


def test_40002_unknown_merchant(router: Router) -> None:
    stranger = MerchantConfig(appid="wxunknown000000001", mch_id="1900009999",
                              sign_key="x" * 32, aes_key="y" * 16)
    fields = Notifier(stranger).signed(Notifier(stranger).envelope(b"{}"))
    reply = router.post(encode(fields))
    assert reply["errcode"] == 40002
    assert "wxunknown000000001" in reply["errmsg"]
    assert reply["nonce_str"] == fields["nonce_str"]
    assert _store_counts(router) == (0, 0)


def test_40003_wrong_sign_and_sign_type_downgrade(router: Router) -> None:
    fields = json.loads(router.hmac.notification(sample_payload("TX-FORGED")))
    forged = {**fields, "sign": router.md5_hmac.sign(fields)}  # another merchant's key
    md5_for_hmac_only = Notifier(router.hmac_merchant, SignType.MD5)  # which it refuses
    downgrade = md5_for_hmac_only.notification(sample_payload("TX-MD5-DOWNGRADE"),
                                               sign_type="MD5")

    assert router.post(encode(forged))["errcode"] == 40003
    reply = router.post(downgrade)
    assert reply["errcode"] == 40003
    assert "MD5" in reply["errmsg"]
    assert _store_counts(router) == (0, 0)


def test_40003_lower_case_sign_is_still_accepted(router: Router) -> None:
    fields = json.loads(router.hmac.notification(sample_payload("TX-LOWER")))
    fields["sign"] = fields["sign"].lower()
    assert router.post(encode(fields))["errcode"] == 0


def _undecryptable_requests(router: Router) -> dict[str, bytes]:
    notifier = router.hmac
    key = parse_aes_key(router.hmac_merchant.aes_key)
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    unpadded = encryptor.update(b"{}" + b"\x00" * 14) + encryptor.finalize()  # pad byte 0

    def signed(**fields: str) -> bytes:
        return encode(notifier.signed(notifier.envelope(b"{}", **fields)))

    return {
        "base64": signed(encrypted_data="not*base64"),
        "16": signed(iv=base64.b64encode(b"8 bytes!").decode()),
        "padding": signed(encrypted_data=base64.b64encode(unpadded).decode(),
                          iv=base64.b64encode(iv).decode()),
    }


def test_40004_signed_but_undecryptable_is_quarantined(router: Router) -> None:
    for reason_word, body in _undecryptable_requests(router).items():
        reply = router.post(body)
        assert reply["errcode"] == 40004, reply
        assert reason_word in reply["errmsg"]
        entry = _quarantine_entry(router, body)
        assert entry["errcode"] == 40004
        assert entry["mch_id"] == router.hmac.mch_id
        assert reason_word in entry["reason"]
    assert _store_counts(router) == (0, 3)


def test_40005_invalid_payload_is_quarantined_and_names_the_field_path(router: Router) -> None:
    body = router.hmac.notification(sample_payload("TX-FEE-STR", total_fee="300"))

    reply = router.post(body)

    assert reply["errcode"] == 40005
    assert "$.total_fee" in reply["errmsg"]
    entry = _quarantine_entry(router, body)
    assert entry["errcode"] == 40005
    assert entry["transaction_id"] == "TX-FEE-STR"
    assert "$.total_fee" in entry["reason"]
    assert router.event("TX-FEE-STR") == []


def test_40005_nested_field_path_and_not_json_payload(router: Router) -> None:
    nested = router.hmac.notification(
        sample_payload("TX-ORDER-BAD", order=[{"order_no": 7}]))
    not_json = router.hmac.notification(b"\xff not json")

    nested_reply = router.post(nested)
    not_json_reply = router.post(not_json)

    assert nested_reply["errcode"] == 40005
    assert "$.order[0].order_no" in nested_reply["errmsg"]
    assert not_json_reply["errcode"] == 40005
    assert _quarantine_entry(router, nested)["errcode"] == 40005
    assert _quarantine_entry(router, not_json)["errcode"] == 40005
    assert _store_counts(router)[0] == 0


def test_a_quarantined_request_sent_again_counts_a_hit_not_a_row(router: Router) -> None:
    body = router.hmac.notification(sample_payload("TX-HITS", total_fee=-1))
    assert router.post(body)["errcode"] == 40005
    assert router.post(body)["errcode"] == 40005
    assert _quarantine_entry(router, body)["hits"] == 2


def test_40009_same_transaction_id_different_content_is_quarantined(router: Router) -> None:
    original = router.hmac.notification(sample_payload("TX-CONFLICT", total_fee=300))
    conflicting = router.hmac.notification(sample_payload("TX-CONFLICT", total_fee=30000))

    assert router.post(original)["errcode"] == 0
    reply = router.post(conflicting)

    assert reply["errcode"] == 40009
    assert "TX-CONFLICT" in reply["errmsg"]
    (event,) = router.event("TX-CONFLICT")
    assert event["payment"]["total_fee"] == 300  # the first payment stays as stored
    entry = _quarantine_entry(router, conflicting)
    assert (entry["errcode"], entry["transaction_id"]) == (40009, "TX-CONFLICT")


def _padded_object(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes."""
    head = b'{"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_41300_body_over_the_limit_with_content_length(router: Router) -> None:
    limit = router.max_body_bytes
    at_limit = router.post(_padded_object(limit))
    over = router.post(_padded_object(limit + 1))

    assert at_limit["errcode"] == 40001  # read and judged: the limit is inclusive
    assert over["errcode"] == 41300
    assert str(limit) in over["errmsg"]


def test_41300_body_over_the_limit_chunked(router: Router) -> None:
    body = _padded_object(router.max_body_bytes * 3)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    response = router.http.post(router.callback_url, content=chunks())

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 200
    assert response.json()["errcode"] == 41300
    # and the router is still serving
    assert router.post(router.hmac.notification(sample_payload("TX-AFTER")))["errcode"] == 0


@contextmanager
def _write_locked(router: Router) -> Iterator[sqlite3.Connection]:
    """Another process's long write transaction on the store file, as a stuck job would hold."""
    db = sqlite3.connect(router.store_path, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield db
        db.execute("ROLLBACK")
    finally:
        db.close()


def _count_in(db: sqlite3.Connection, table: str, transaction_id: str) -> int:
    (count,) = db.execute(f"SELECT count(*) FROM {table} WHERE transaction_id = ?",  # noqa: S608
                          (transaction_id,)).fetchone()
    return int(count)


def test_50001_when_the_store_cannot_commit_then_a_retry_is_stored(router: Router) -> None:
    payload = sample_payload("TX-LOCKED")
    fields = router.hmac.signed(router.hmac.envelope(encode(payload)))
    invalid = router.hmac.notification(sample_payload("TX-LOCKED-BAD", total_fee="1"))

    with _write_locked(router) as db:
        reply = router.post(encode(fields))
        quarantine_reply = router.post(invalid)
        assert _count_in(db, "events", "TX-LOCKED") == 0
        assert _count_in(db, "quarantine", "TX-LOCKED-BAD") == 0

    assert reply == {"errcode": 50001, "errmsg": reply["errmsg"],
                     "nonce_str": fields["nonce_str"]}
    assert quarantine_reply["errcode"] == 50001
    assert router.event("TX-LOCKED") == []
    retry = router.post(encode(fields))  # WeChat resends the same request
    assert retry["errcode"] == 0
    assert len(router.event("TX-LOCKED")) == 1
    assert router.post(invalid)["errcode"] == 40005


def test_every_reply_is_http_200_json(router: Router) -> None:
    """A sample of each outcome through a raw client: status, media type and shape."""
    bodies: list[bytes] = [
        router.hmac.notification(sample_payload("TX-200")),
        b"",
        b"{}",
        b"null",
        router.hmac.notification(sample_payload("TX-200-BAD", total_fee=None)),
        _padded_object(router.max_body_bytes + 10),
    ]
    for body in bodies:
        response = router.post_raw(body)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        reply = response.json()
        assert set(reply) <= {"errcode", "errmsg", "nonce_str"}
