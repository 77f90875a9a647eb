"""The admin API end to end: a real ``serve`` with its admin listener, called over HTTP with
bearer tokens as an ops script would, on each store.

One router a store serves the whole module (tests look only at the payments they send); its
config is edited live where a test needs it (a revoked token, a merchant's key fixed). Three
plugins: ``ledger``, ``receipt`` (here: one effect a payment, through ``Delivery.once``, after
the ledger) and ``doomed`` (dead at once, for replays).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from arrears_router import ArrearsPayment, Delivery, hookimpl
from arrears_router.admin.api_quarantine import BodyEncoding, quarantine_detail
from arrears_router.delivery import idempotency_key
from arrears_router.errcodes import ErrCode
from arrears_router.store import QuarantineRecord
from arrears_router.wire.cipher import AesKey, DecryptError, parse_aes_key
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import PYTHON_M, RouterProcess, postgres_schema, wait_until, write_config

from .conftest import HMAC_MERCHANT, MD5_MERCHANT, Router

API = "/admin/api/v1"
OPS = {"name": "ops-alice", "scope": "operate", "token": "alice-token-0123456789"}
READER = {"name": "reader-bob", "scope": "read", "token": "bob-token-0123456789abc"}
CAROL = {"name": "contractor-carol", "scope": "operate", "token": "carol-token-0123456789"}
WRONG_AES = "another-aes-256-key-admin-tests!"
"""32 bytes, not the merchant's: what a merchant's new key looks like before the config has it."""


class Receipt:
    """One receipt line a payment, ``effect KEY``, made through ``Delivery.once``: so a
    delivery has an effect record, and a second delivery of a payment writes nothing."""

    name = "receipt"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        path: str

    def __init__(self, settings: Settings) -> None:
        self.path = Path(settings.path)

    @hookimpl
    async def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        async with delivery.once() as effect:
            if not effect.act:
                return effect.note
            with self.path.open("a", encoding="utf-8") as file:
                file.write(f"effect {delivery.idempotency_key}\n")
        return "receipt written"


_ids = itertools.count(1)


def new_transaction_id() -> str:
    return f"4200{next(_ids):024d}"


def bearer(token: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token['token']}"}


class AdminRouter:
    """The module's router: its config (rewritten whole for a live edit), its callback and its
    admin API, called as ``ops-alice`` unless told otherwise."""

    def __init__(self, directory: Path, store_url: str) -> None:
        self.router = Router(directory)  # its config is replaced below, before it starts
        self.directory = directory
        self.receipts = directory / "receipts.log"
        self.store_url = store_url
        self.tokens = [OPS, READER, CAROL]
        self.previous_keys: list[dict[str, str]] = []
        self.plugins: dict[str, dict[str, Any]] = {
            "ledger": {"mode": "enabled"},
            "receipt": {"use": "tests.e2e.test_admin_api:Receipt", "path": str(self.receipts),
                        "after": ["ledger"]},
            "doomed": {"use": "tests.sample_plugins:Recorder",
                       "path": str(directory / "doomed.log"), "permanent": True},
        }
        self.write_config()
        self.api = httpx.Client(timeout=30)

    def write_config(self) -> None:
        hmac = {**HMAC_MERCHANT, **({"previous_keys": self.previous_keys}
                                    if self.previous_keys else {})}
        write_config(self.router.config_path, merchants=(hmac, MD5_MERCHANT),
                     server={"host": "127.0.0.1", "port": 0},
                     store={"url": self.store_url}, plugins=self.plugins,
                     admin={"host": "127.0.0.1", "port": 0, "tokens": self.tokens})

    def start(self) -> None:
        self.router.start()
        assert self.router.server.admin_url, self.router.server.output()

    def close(self) -> None:
        self.api.close()
        self.router.close()

    # -- the admin API

    def call(self, method: str, path: str, *, token: dict[str, str] | None = OPS,
             **kwargs: Any) -> httpx.Response:
        return self.api.request(method, f"{self.router.server.admin_url}{API}{path}",
                                headers=bearer(token) if token else {}, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON of a call that must succeed."""
        response = self.call(method, path, **kwargs)
        assert response.is_success, (method, path, response.status_code, response.text)
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.ok("GET", path, params=params)

    def every(self, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
        """Every item of a listing, page by page: ``next`` followed to the end."""
        items: list[dict[str, Any]] = []
        after = None
        while True:
            found = self.get(path, limit=limit, **params, **({"after": after} if after else {}))
            assert len(found["items"]) <= limit
            items += found["items"]
            if found["next"] is None:
                return items
            assert found["next"] == found["items"][-1]["id"]
            after = found["next"]

    # -- WeChat's side, and waiting for plugins

    def pay(self, transaction_id: str | None = None, **payload: Any) -> str:
        transaction_id = transaction_id or new_transaction_id()
        reply = self.router.post(self.router.hmac.notification(
            sample_payload(transaction_id, **payload)))
        assert reply["errcode"] == 0, reply
        return transaction_id

    def payment(self, transaction_id: str) -> dict[str, Any]:
        found = self.get(f"/payments/{transaction_id}")
        assert [p["payment"]["transaction_id"] for p in found["payments"]] == [transaction_id]
        payment: dict[str, Any] = found["payments"][0]
        return payment

    def settled(self, transaction_id: str) -> dict[str, Any]:
        """The payment once none of its deliveries is pending."""
        def done() -> dict[str, Any] | None:
            payment = self.payment(transaction_id)
            deliveries = payment["deliveries"]
            return payment if deliveries and all(
                d["status"] != "pending" for d in deliveries) else None
        return wait_until(done, f"the deliveries of {transaction_id} to settle")

    def receipts_of(self, transaction_id: str) -> int:
        key = idempotency_key(HMAC_MERCHANT["mch_id"], transaction_id, "receipt")
        if not self.receipts.exists():
            return 0
        return self.receipts.read_text(encoding="utf-8").splitlines().count(f"effect {key}")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def admin(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[AdminRouter]:
    with contextlib.ExitStack() as stack:
        store_url = ("sqlite:///store/router.db" if request.param == "sqlite"
                     else stack.enter_context(postgres_schema()))
        router = AdminRouter(tmp_path_factory.mktemp(f"admin-{request.param}"), store_url)
        stack.callback(router.close)
        router.start()
        yield router


def by_plugin(payment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["plugin"]: d for d in payment["deliveries"]}


# -- plugins and their modes


def test_plugins_show_mode_order_and_backlog_and_a_mode_change_is_audited(
        admin: AdminRouter) -> None:
    plugins = {p["name"]: p for p in admin.get("/plugins")}
    assert set(plugins) == {"ledger", "receipt", "doomed"}
    assert plugins["receipt"]["after"] == ["ledger"]
    assert all(p["mode"] == "enabled" and p["configured"] for p in plugins.values())

    changed = admin.ok("PUT", "/plugins/receipt/mode", json={"mode": "paused"})
    assert changed == {"plugin": "receipt", "previous": "enabled", "mode": "paused"}
    held = admin.pay()
    backlog = wait_until(lambda: next(
        p for p in admin.get("/plugins") if p["name"] == "receipt" and p["pending"]),
        "the paused plugin's delivery to wait")
    assert datetime.fromisoformat(backlog["oldest_pending_at"]).tzinfo is not None
    assert backlog["oldest_pending_age_s"] >= 0

    changed = admin.ok("PUT", "/plugins/receipt/mode", json={"mode": "enabled"})
    assert changed == {"plugin": "receipt", "previous": "paused", "mode": "enabled"}
    assert by_plugin(admin.settled(held))["receipt"]["status"] == "done"
    caught_up = next(p for p in admin.get("/plugins") if p["name"] == "receipt")
    assert caught_up["oldest_pending_at"] is None and caught_up["oldest_pending_age_s"] is None
    assert caught_up["done"] >= 1

    audit = admin.get("/audit", action="mode", limit=2)["items"]
    assert [(e["actor"], e["target"], e["detail"]) for e in audit] == [
        ("ops-alice", "receipt", "paused -> enabled"), ("ops-alice", "receipt",
                                                        "enabled -> paused")]


def test_a_mode_change_of_an_unknown_plugin_or_to_no_mode_is_refused(admin: AdminRouter
                                                                     ) -> None:
    unknown = admin.call("PUT", "/plugins/nosuch/mode", json={"mode": "paused"})
    assert unknown.status_code == 404
    assert "nosuch" in unknown.json()["detail"]
    bad = admin.call("PUT", "/plugins/receipt/mode", json={"mode": "asleep"})
    assert bad.status_code == 400
    assert "mode" in bad.text


# -- payments and deliveries


def test_payments_are_found_by_each_key_and_shown_with_their_deliveries(
        admin: AdminRouter) -> None:
    started = datetime.now(UTC)
    tid = admin.pay(out_user_id="rider-find-me", repay_no="R-find-me")
    for key, value in (("transaction_id", tid), ("out_user_id", "rider-find-me"),
                       ("repay_no", "R-find-me")):
        found = admin.get("/payments", **{key: value})
        assert [e["payment"]["transaction_id"] for e in found["items"]] == [tid], key
        assert found["next"] is None
    window = admin.get("/payments", since=started.isoformat(),
                       until=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())["items"]
    assert tid in [e["payment"]["transaction_id"] for e in window]
    assert admin.get("/payments", transaction_id=tid, until=started.isoformat())["items"] == []

    payment = admin.settled(tid)
    assert payment["payment"]["out_user_id"] == "rider-find-me"
    assert {p: d["status"] for p, d in by_plugin(payment).items()} == {
        "ledger": "done", "receipt": "done", "doomed": "dead"}
    missing = admin.call("GET", "/payments/4200999999999999999999999999")
    assert missing.status_code == 404
    assert "4200999999999999999999999999" in missing.json()["detail"]


def test_a_time_without_a_zone_or_a_limit_out_of_bounds_is_a_400_naming_it(
        admin: AdminRouter) -> None:
    for path, params, named in (
            ("/payments", {"since": "2026-11-25T09:00:00"}, "since"),
            ("/deliveries", {"until": "2026-11-25T09:00:00"}, "until"),
            ("/payments", {"limit": 0}, "limit"), ("/audit", {"limit": 501}, "limit"),
            ("/quarantine", {"limit": "many"}, "limit"), ("/deliveries", {"status": "x"}, "status"),
            ("/deliveries", {"after": -1}, "after")):
        response = admin.call("GET", path, params=params)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["detail"].startswith(f"{named}:"), response.json()
    naive = admin.call("POST", "/replays", json={"plugin": "doomed",
                                                  "since": "2026-11-25T09:00:00"})
    assert naive.status_code == 400
    assert "since" in naive.text


def test_pages_do_not_overlap_cover_everything_and_end_with_no_next(admin: AdminRouter) -> None:
    for _ in range(5):
        admin.pay()
    for path, params in (("/payments", {}), ("/deliveries", {}),
                         ("/deliveries", {"plugin": "doomed", "status": "dead"}),
                         ("/audit", {})):
        whole = admin.get(path, limit=500, **params)
        assert whole["next"] is None
        paged = admin.every(path, 2, **params)
        ids = [item["id"] for item in paged]
        assert ids == [item["id"] for item in whole["items"]], path
        assert ids == sorted(set(ids), reverse=True), path  # newest first, none twice
        assert len(ids) >= 3, path


def test_a_delivery_is_shown_with_its_attempts_and_effect_and_replayed_one_by_one(
        admin: AdminRouter) -> None:
    payment = by_plugin(admin.settled(admin.pay()))
    receipt = admin.get(f"/deliveries/{payment['receipt']['id']}")
    assert receipt["delivery"]["status"] == "done"
    assert [a["status"] for a in receipt["attempts"]] == ["done"]
    assert receipt["effect"]["done_at"] is not None

    dead = admin.get(f"/deliveries/{payment['doomed']['id']}")
    assert dead["effect"] is None
    assert [(a["attempt"], a["status"]) for a in dead["attempts"]] == [(1, "dead")]
    assert "refused for good" in dead["attempts"][0]["error"]

    replayed = admin.ok("POST", f"/deliveries/{payment['doomed']['id']}/replay")
    assert replayed["id"] == payment["doomed"]["id"] and replayed["replays"] == 1
    wait_until(lambda: admin.get(f"/deliveries/{replayed['id']}")["delivery"]["status"]
               == "dead", "the replayed delivery to die again")
    latest = admin.get(f"/deliveries/{replayed['id']}")["attempts"][0]
    assert (latest["attempt"], latest["status"]) == (1, "dead")  # counted afresh
    first = dead["attempts"][0]
    assert datetime.fromisoformat(latest["at"]) > datetime.fromisoformat(first["at"])
    assert admin.call("POST", "/deliveries/999999999/replay").status_code == 404
    assert admin.call("GET", "/deliveries/999999999").status_code == 404


def test_a_bulk_replay_runs_exactly_its_plan_once(admin: AdminRouter) -> None:
    since = datetime.now(UTC)
    planned = [admin.pay(), admin.pay()]
    doomed = {tid: by_plugin(admin.settled(tid))["doomed"]["id"] for tid in planned}

    plan = admin.ok("POST", "/replays", json={"plugin": "doomed", "since": since.isoformat()})
    assert (plan["count"], plan["actor"], plan["ran_at"]) == (2, "ops-alice", None)
    assert admin.get(f"/replays/{plan['id']}") == plan
    later = by_plugin(admin.settled(admin.pay()))["doomed"]["id"]  # dead after the plan

    ran = admin.ok("POST", f"/replays/{plan['id']}/run")
    assert (ran["replayed"], ran["ran_by"]) == (2, "ops-alice")
    again = admin.call("POST", f"/replays/{plan['id']}/run")
    assert again.status_code == 409
    assert "already ran" in again.json()["detail"]

    for tid, delivery_id in doomed.items():
        admin.settled(tid)
        assert admin.get(f"/deliveries/{delivery_id}")["delivery"]["replays"] == 1
    assert admin.get(f"/deliveries/{later}")["delivery"]["replays"] == 0
    audit = admin.get("/audit", limit=2)["items"]
    assert [(e["action"], e["actor"], e["target"]) for e in audit] == [
        ("replay_run", "ops-alice", str(plan["id"])),
        ("replay_plan", "ops-alice", str(plan["id"]))]

    assert admin.call("POST", "/replays", json={}).status_code == 400
    assert admin.call("GET", "/replays/999999999").status_code == 404
    assert admin.call("POST", "/replays/999999999/run").status_code == 404


# -- quarantine


def _undecryptable(notifier: Notifier, key: AesKey, payload: dict[str, Any]) -> bytes:
    """A notification the configured key cannot decrypt: with another key, the padding is
    wrong but for 1 in 256 IVs; those are skipped so the router's answer is known."""
    while True:
        body = notifier.notification(payload)
        fields = msgspec.json.decode(body)
        try:
            key.decrypt(fields["encrypted_data"], fields["iv"])
        except DecryptError:
            return body


def test_a_request_quarantined_for_a_missing_key_is_stored_once_reingested_after_the_fix(
        admin: AdminRouter) -> None:
    tid = new_transaction_id()
    merchant = msgspec.structs.replace(admin.router.hmac_merchant, aes_key=WRONG_AES)
    body = _undecryptable(Notifier(merchant), AesKey(parse_aes_key(HMAC_MERCHANT["aes_key"])),
                          sample_payload(tid))
    assert admin.router.post(body)["errcode"] == ErrCode.UNDECRYPTABLE

    listed = admin.get("/quarantine", errcode=ErrCode.UNDECRYPTABLE)["items"]
    entry = next(q for q in listed
                 if admin.get(f"/quarantine/{q['id']}")["body"] == body.decode())
    shown = admin.get(f"/quarantine/{entry['id']}")
    assert (shown["body_encoding"], shown["body_bytes"], shown["mch_id"]) == (
        "utf-8", len(body), HMAC_MERCHANT["mch_id"])

    refused = admin.ok("POST", f"/quarantine/{entry['id']}/reingest")
    assert refused["errcode"] == ErrCode.UNDECRYPTABLE
    assert refused["quarantine"]["reingest_errcode"] == ErrCode.UNDECRYPTABLE
    assert admin.get("/payments", transaction_id=tid)["items"] == []
    # WeChat did not send it again: no hit counted, as it would be for WeChat's retry.
    assert (refused["quarantine"]["hits"], refused["quarantine"]["last_seen_at"]) == (
        shown["hits"], shown["last_seen_at"])

    admin.previous_keys = [{"sign_key": HMAC_MERCHANT["sign_key"], "aes_key": WRONG_AES}]
    admin.write_config()
    stored = admin.ok("POST", f"/quarantine/{entry['id']}/reingest")
    assert (stored["errcode"], stored["errmsg"]) == (0, "ok")
    record = stored["quarantine"]
    assert (record["reingest_errcode"], record["reingested_by"]) == (0, "ops-alice")
    assert {p: d["status"] for p, d in by_plugin(admin.settled(tid)).items()} == {
        "ledger": "done", "receipt": "done", "doomed": "dead"}
    assert admin.receipts_of(tid) == 1

    again = admin.ok("POST", f"/quarantine/{entry['id']}/reingest")
    assert (again["errcode"], again["errmsg"]) == (0, "ok: already stored")
    assert len(admin.get("/payments", transaction_id=tid)["items"]) == 1
    assert len(admin.settled(tid)["deliveries"]) == 3
    assert admin.receipts_of(tid) == 1
    audit = admin.get("/audit", action="reingest", limit=3)["items"]
    assert [(e["actor"], e["target"], e["detail"].split(":")[0]) for e in audit] == [
        ("ops-alice", str(entry["id"]), "errcode 0")] * 2 + [
        ("ops-alice", str(entry["id"]), f"errcode {ErrCode.UNDECRYPTABLE}")]
    assert admin.call("POST", "/quarantine/999999999/reingest").status_code == 404
    assert admin.call("GET", "/quarantine/999999999").status_code == 404


def test_a_body_that_is_not_utf8_is_shown_in_base64() -> None:
    at = datetime.now(UTC)
    record = QuarantineRecord(id=1, errcode=40001, reason="r", appid="a", mch_id="m",
                              transaction_id="", first_seen_at=at, last_seen_at=at, hits=1,
                              body=b"\xff\xfe{")
    shown = quarantine_detail(record)
    assert shown.body_encoding is BodyEncoding.BASE64
    assert base64.b64decode(shown.body) == b"\xff\xfe{"


# -- the ledger and the config


def test_the_ledger_balance_is_the_payments_booked(admin: AdminRouter) -> None:
    admin.settled(admin.pay(total_fee=450))
    wait_until(lambda: next(p for p in admin.get("/plugins")
                            if p["name"] == "ledger")["pending"] == 0, "the ledger to catch up")
    paid = sum(e["payment"]["total_fee"] for e in admin.every("/payments", 500))
    clearing = f"wechat_clearing:{HMAC_MERCHANT['mch_id']}"
    balance = admin.get("/ledger/balance", account="wechat_clearing")
    assert [(a["account"], a["debit_fen"], a["credit_fen"]) for a in balance["accounts"]] == [
        (clearing, paid, 0)]
    whole = admin.get("/ledger/balance")
    assert whole["total"]["debit_fen"] == whole["total"]["credit_fen"] == paid
    assert whole["total"]["balance_fen"] == 0
    assert admin.call("GET", "/ledger/balance", params={"day": "2026-13-40"}).status_code == 400


def test_the_config_summary_names_tokens_and_merchants_and_shows_no_secret(
        admin: AdminRouter) -> None:
    response = admin.call("GET", "/config")
    summary = response.json()
    assert summary["admin"]["tokens"] == [{"name": t["name"], "scope": t["scope"]}
                                          for t in admin.tokens]
    assert [m["mch_id"] for m in summary["merchants"]] == [HMAC_MERCHANT["mch_id"],
                                                           MD5_MERCHANT["mch_id"]]
    assert {p["name"]: p["after"] for p in summary["plugins"]} == {
        "ledger": [], "receipt": ["ledger"], "doomed": []}
    secrets = [OPS["token"], READER["token"], CAROL["token"], WRONG_AES,
               *(m[key] for m in (HMAC_MERCHANT, MD5_MERCHANT) for key in ("sign_key", "aes_key")),
               MD5_MERCHANT["aes_key"].removeprefix("base64:")]
    assert not [s for s in secrets if s in response.text]


# -- who may do what


READS = [("GET", p) for p in (
    "/plugins", "/payments", "/payments/4200999999999999999999999999", "/deliveries",
    "/deliveries/999999999", "/replays/999999999", "/quarantine", "/quarantine/999999999",
    "/audit", "/ledger/balance", "/config")]
CHANGES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("PUT", "/plugins/receipt/mode", {"mode": "paused"}),
    ("POST", "/deliveries/999999999/replay", None),
    ("POST", "/replays", {"plugin": "doomed"}),
    ("POST", "/replays/999999999/run", None),
    ("POST", "/quarantine/999999999/reingest", None),
]


def test_no_token_or_a_wrong_one_gets_401_everywhere(admin: AdminRouter) -> None:
    wrong = {"name": "x", "token": "not-a-configured-token-0000"}
    for method, path, body in [(m, p, None) for m, p in READS] + CHANGES:
        for token in (None, wrong):
            response = admin.call(method, path, token=token, json=body)
            assert response.status_code == 401, (method, path, token, response.text)
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_read_token_sees_everything_and_changes_nothing(admin: AdminRouter) -> None:
    for method, path in READS:
        response = admin.call(method, path, token=READER)
        assert response.status_code in (200, 404), (path, response.text)
    audited = admin.get("/audit", limit=1)["items"]
    for method, path, body in CHANGES:
        response = admin.call(method, path, token=READER, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "reader-bob" in response.json()["detail"]
    assert admin.get("/audit", limit=1)["items"] == audited


def test_a_token_revoked_by_a_config_edit_stops_working_without_a_restart(
        admin: AdminRouter) -> None:
    serving = admin.router.server.pid
    assert admin.call("GET", "/plugins", token=CAROL).status_code == 200
    admin.tokens = [OPS, READER]
    admin.write_config()
    assert admin.call("GET", "/plugins", token=CAROL).status_code == 401
    assert admin.call("GET", "/plugins", token=OPS).status_code == 200
    assert admin.router.server.pid == serving


# -- off, and alone


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_without_tokens_the_admin_port_is_not_opened(tmp_path: Path) -> None:
    port = _free_port()
    config = write_config(tmp_path / "config.toml", server={"host": "127.0.0.1", "port": 0},
                          admin={"host": "127.0.0.1", "port": port})
    server = RouterProcess(config, "serve")
    try:
        server.start()
        assert server.admin_url == ""
        assert "admin" not in server.out.read_text()
        with pytest.raises(ConnectionRefusedError), socket.create_connection(
                ("127.0.0.1", port), timeout=5):
            pass
    finally:
        server.close()


def test_the_ledger_balance_is_404_where_no_ledger_is_configured(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", admin={"port": 0, "tokens": [OPS]})
    out = tmp_path / "admin.stdout"
    with out.open("wb") as stdout:
        alone = subprocess.Popen([*PYTHON_M, "admin", "--config", str(config)], stdout=stdout,
                                 stderr=subprocess.STDOUT)
    try:
        line = wait_until(lambda: next((s for s in out.read_text().splitlines()
                                        if s.startswith("arrears-router admin listening on")),
                                       None), "`arrears-router admin` to listen")
        response = httpx.get(f"{line.split()[-1]}{API}/ledger/balance", headers=bearer(OPS))
        assert response.status_code == 404
        assert "ledger plugin is not configured" in response.json()["detail"]
    finally:
        alone.terminate()
        alone.wait(30)
