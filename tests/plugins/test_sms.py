"""The sms plugin through real deliveries (the test kit's router) against real local servers:
one plays the phone-lookup service, one the SMS provider (generic HTTP, or Tencent Cloud).

Tencent's signature is checked with Tencent's own SDK (tencentcloud-sdk-python-common),
never with the plugin's code. Every test also checks, through ``no_leaks``, that no log
line carried the rider's phone or the secret key.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.credential import Credential
from tencentcloud.common.http.request import RequestInternal

from arrears_router import RetryableError
from arrears_router.delivery import EffectRecord
from arrears_router.platform.registry import RegistryError
from arrears_router.plugins.sms import Sms
from arrears_router.store import DeliveryRecord, DeliveryStatus, Store, open_store
from arrears_router.testkit import Report, TestRouter
from arrears_router.wire.notifier import sample_payload
from tests.harness import cli, cli_json
from tests.plugins.conftest import Answer, Recorded, RecordingServer

RouterFactory = Callable[..., TestRouter]

PHONE = "+8613800000000"
MASKED = "+86138****0000"
SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"
SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLEKEY"
# Every form a provider or a log line might show the number in, and the key.
NEVER_SHOWN = (PHONE, "8613800000000", "13800000000", SECRET_KEY)
RIDER = "rider-0001"  # the sample payment's out_user_id
OPENID = "oRider0000000000000000000001"  # and its openid
MCH_ID = "1900000109"  # the test kit's merchant


# -- servers and helpers


class TimedServer(RecordingServer):
    """Also notes when each request arrived (monotonic seconds), in the order recorded."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        super().__init__()

    def _record(self, recorded: Recorded) -> Answer:
        with self._changed:  # the base class's (reentrant) lock: arrivals match requests
            self.arrivals.append(time.monotonic())
            return super()._record(recorded)


@pytest.fixture
def lookup_server() -> Iterator[RecordingServer]:
    """A second recording server: the operator's account service that knows phones."""
    server = RecordingServer()
    yield server
    server.close()


@pytest.fixture
def timed_server() -> Iterator[TimedServer]:
    server = TimedServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def no_leaks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every log line of the test (router, dispatcher, plugin, httpx), at DEBUG, with its
    traceback if any. Torn down after the router has stopped (autouse: set up first).
    """
    caplog.set_level(logging.DEBUG)
    yield
    formatter = logging.Formatter()
    # Not caplog.text: it holds only the current phase's lines, and this is the teardown.
    lines = [formatter.format(record)
             for when in ("setup", "call", "teardown") for record in caplog.get_records(when)]
    assert lines  # something was looked at
    for secret in NEVER_SHOWN:
        assert not [line for line in lines if secret in line]


def assert_clean(delivery: DeliveryRecord) -> None:
    shown = (delivery.note, delivery.last_error, delivery.last_traceback,
             delivery.error_before_done, delivery.traceback_before_done)
    for secret in NEVER_SHOWN:
        assert not [text for text in shown if secret in text]


def error_of(delivery: DeliveryRecord) -> str:
    """The last failed attempt's error, current or (the delivery done since) overcome."""
    return delivery.last_error or delivery.error_before_done


def http_provider(server: RecordingServer, **settings: Any) -> dict[str, Any]:
    return {"type": "http", "url": f"{server.url}/send",
            "headers": {"Authorization": "Bearer sms-token"}, **settings}


def tencent_provider(server: RecordingServer, **settings: Any) -> dict[str, Any]:
    return {"type": "tencent", "secret_id": SECRET_ID, "secret_key": SECRET_KEY,
            "sdk_app_id": "1400006666", "sign_name": "乘车码", "template_id": "1110",
            "region": "ap-guangzhou", "endpoint": server.url, **settings}


def start(arrears_router: RouterFactory, provider: dict[str, Any], **settings: Any) -> TestRouter:
    table = {"provider": provider, "phones": {RIDER: PHONE}, **settings}
    return arrears_router({"sms": table}, classes={"sms": Sms})


def sms(report: Report) -> DeliveryRecord:
    delivery = report.deliveries["sms"]
    assert_clean(delivery)
    return delivery


def tencent_ok(serial: str = "2640:4386209931816112344") -> dict[str, Any]:
    status = {"SerialNo": serial, "PhoneNumber": PHONE, "Fee": 1, "SessionContext": "",
              "Code": "Ok", "Message": "send success", "IsoCode": "CN"}
    return {"Response": {"SendStatusSet": [status], "RequestId": "a0aabda6-0001"}}


def tencent_refusal(code: str, message: str) -> dict[str, Any]:
    return {"Response": {"Error": {"Code": code, "Message": message},
                         "RequestId": "a0aabda6-0002"}}


def tencent_status(code: str, message: str) -> dict[str, Any]:
    status = {"SerialNo": "", "PhoneNumber": PHONE, "Fee": 0, "SessionContext": "",
              "Code": code, "Message": message, "IsoCode": "CN"}
    return {"Response": {"SendStatusSet": [status], "RequestId": "a0aabda6-0003"}}


def sdk_authorization(request: Recorded) -> str:
    """The Authorization Tencent's SDK computes for this exact request (method, path, content
    type, host, body, timestamp): its canonical request and its TC3 signer, not ours.
    """
    timestamp = int(request.headers["x-tc-timestamp"])
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    client = CommonClient("sms", "2021-01-11", Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou")
    headers = {"Content-Type": request.headers["content-type"], "Host": request.headers["host"],
               "X-TC-Timestamp": str(timestamp)}
    internal = RequestInternal(request.headers["host"], request.method, request.path,
                               header=headers, data=request.body)
    signature = client._get_tc3_signature({}, internal, date, "sms", SECRET_KEY)
    # The header's layout, as abstract_client._build_req_with_tc3_signature writes it.
    return (f"TC3-HMAC-SHA256 Credential={SECRET_ID}/{date}/sms/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}")


def first_failure(router: TestRouter, transaction_id: str, timeout: float = 30) -> DeliveryRecord:
    """The delivery once its first attempt has failed (for a retry too far off to settle)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        delivery = router.deliveries(transaction_id).get("sms")
        if delivery is not None and delivery.last_error:
            return delivery
        time.sleep(0.02)  # polling for the attempt's record, not passing time
    raise AssertionError(f"no failed attempt in {timeout} s")


# -- the generic HTTP provider


def test_generic_provider_gets_the_exact_request_and_a_redelivery_texts_no_one_again(
    arrears_router: RouterFactory, http_server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"to": "{phone}", "text": "{message}", "ref": "{transaction_id}"}
    router = start(arrears_router, http_provider(http_server, body=body),
                   message="{yuan}元 {paid_at} {repay_no} {order_nos}")
    report = router.pay(total_fee=450)
    report.assert_done("sms")
    assert sms(report).note == f"sent to {MASKED} via http: HTTP 200"
    again = router.redeliver(report)  # the duplicate a crash would cause
    again.assert_done("sms")
    assert sms(again).replays == 1
    assert sms(again).note.startswith("done already at ")
    tx = report.transaction_id
    [request] = http_server.requests  # the text went once
    assert (request.method, request.path) == ("POST", "/send")
    assert request.headers["idempotency-key"] == f"{MCH_ID}:{tx}:sms"
    assert request.headers["authorization"] == "Bearer sms-token"
    assert request.headers["content-type"] == "application/json"
    # The amount in yuan, the time in CST (time_end 20261125093015 is CST already).
    assert request.json() == {
        "to": PHONE, "text": f"4.50元 2026-11-25 09:30:15 R{tx} O{tx}-1,O{tx}-2", "ref": tx,
    }
    assert f"sent to {MASKED} via http" in caplog.text  # the log was looked at, and is masked


def test_the_default_message_is_chinese_and_the_default_body_phone_and_message(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_provider(http_server))
    report = router.pay(total_fee=300)
    report.assert_done("sms")
    [request] = http_server.wait_for(1)
    tx = report.transaction_id
    expected = f"您已成功支付乘车欠款3.00元（欠费单R{tx}），账户已恢复乘车。"  # noqa: RUF001
    assert request.json() == {"phone": PHONE, "message": expected}


@pytest.fixture
def httpx_at_warning() -> Iterator[None]:
    """httpx logs every request's URL at INFO; `arrears-router serve` and `worker` keep its
    logger at WARNING (arrears_router.cli), and so does this. (caplog.set_level would not do: it
    raises caplog's own handler too, and no_leaks would then see nothing.)
    """
    httpx_logger = logging.getLogger("httpx")
    level = httpx_logger.level
    httpx_logger.setLevel(logging.WARNING)
    yield
    httpx_logger.setLevel(level)


@pytest.mark.usefixtures("httpx_at_warning")  # the URL carries the phone: see the fixture
def test_a_get_provider_gets_the_fields_percent_encoded_in_its_url(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    provider = http_provider(http_server, method="GET", url=f"{http_server.url}/send"
                             "?to={phone}&text={message}")
    router = start(arrears_router, provider, message="已付{yuan}元 {paid_at}")
    router.pay().assert_done("sms")
    [request] = http_server.wait_for(1)
    assert (request.method, request.body) == ("GET", b"")
    # A raw + in a query would arrive as a space: the phone was encoded as %2B.
    assert request.query == {"to": [PHONE], "text": ["已付3.00元 2026-11-25 09:30:15"]}


@pytest.mark.parametrize(
    ("answers", "settings", "status", "attempt", "error"),
    [
        pytest.param([Answer(500, {"error": f"gateway cannot reach {PHONE}"}), Answer()], {},
                     DeliveryStatus.DONE, 2, "RetryableError: provider http: HTTP 500", id="500"),
        pytest.param([Answer(400, {"error": f"{PHONE} is not a mobile number"})], {},
                     DeliveryStatus.DEAD, 1, "PermanentError: provider http: HTTP 400", id="400"),
        pytest.param([Answer(delay=2.0), Answer()], {"request_timeout": 0.3},
                     DeliveryStatus.DONE, 2, "provider http: no answer from http://",
                     id="timeout"),
    ],
)
def test_generic_provider_answers(
    arrears_router: RouterFactory, http_server: RecordingServer, answers: list[Answer],
    settings: dict[str, Any], status: DeliveryStatus, attempt: int, error: str,
) -> None:
    http_server.script(*answers)
    router = start(arrears_router, http_provider(http_server), **settings)
    delivery = sms(router.pay())
    assert (delivery.status, delivery.attempt) == (status, attempt)
    assert error in error_of(delivery)
    if "HTTP" in error:  # the provider's answer is kept, with the number masked
        assert MASKED in error_of(delivery)


def test_generic_provider_429_waits_as_long_as_retry_after_says(
    arrears_router: RouterFactory, timed_server: TimedServer
) -> None:
    timed_server.script(Answer(429, {"error": "slow down"}, headers={"Retry-After": "1"}))
    # A backoff of an hour: only Retry-After can bring the retry back within the test.
    router = start(arrears_router, http_provider(timed_server), backoff=3600)
    delivery = sms(router.pay())
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 2)
    assert "HTTP 429" in delivery.error_before_done
    assert timed_server.arrivals[1] - timed_server.arrivals[0] >= 1.0


def test_a_provider_that_refuses_connections_is_retried_then_dead(
    arrears_router: RouterFactory, refused_url: str
) -> None:
    provider = {"type": "http", "url": f"{refused_url}/send"}
    router = start(arrears_router, provider, max_attempts=2)
    delivery = sms(router.pay())
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DEAD, 2)
    assert delivery.last_error.startswith(
        "gave up after 2 attempts: RetryableError: provider http: ConnectError"
    )


# -- finding the phone


def test_the_phone_from_the_lookup_service(
    arrears_router: RouterFactory, http_server: RecordingServer, lookup_server: RecordingServer
) -> None:
    lookup_server.default = Answer(body={"data": {"mobile": PHONE, "name": "张三"}})
    lookup = {"url": f"{lookup_server.url}/riders/{{rider_id}}/phone", "field": "data.mobile",
              "headers": {"Authorization": "Bearer accounts-token"}}
    router = start(arrears_router, http_provider(http_server), phones={}, lookup=lookup)
    report = router.pay()
    report.assert_done("sms")
    [asked] = lookup_server.wait_for(1)
    assert (asked.method, asked.path) == ("GET", f"/riders/{RIDER}/phone")
    assert asked.headers["authorization"] == "Bearer accounts-token"
    assert http_server.wait_for(1)[0].json()["phone"] == PHONE


def test_the_lookup_falls_back_to_the_openid_without_an_out_user_id(
    arrears_router: RouterFactory, http_server: RecordingServer, lookup_server: RecordingServer
) -> None:
    lookup_server.default = Answer(body={"phone": PHONE})
    lookup = {"url": f"{lookup_server.url}/riders/{{rider_id}}/phone"}
    router = start(arrears_router, http_provider(http_server), phones={}, lookup=lookup)
    router.pay(out_user_id="").assert_done("sms")
    assert lookup_server.wait_for(1)[0].path == f"/riders/{OPENID}/phone"
    assert len(http_server.wait_for(1)) == 1


def test_the_static_table_wins_over_the_lookup(
    arrears_router: RouterFactory, http_server: RecordingServer, lookup_server: RecordingServer
) -> None:
    lookup = {"url": f"{lookup_server.url}/riders/{{rider_id}}/phone"}
    router = start(arrears_router, http_provider(http_server), lookup=lookup)
    router.pay().assert_done("sms")
    assert lookup_server.requests == []
    assert http_server.wait_for(1)[0].json()["phone"] == PHONE


@pytest.mark.parametrize(
    ("lookup_answer", "settings", "payment"),
    [
        pytest.param(None, {"phones": {"rider-0002": PHONE}}, {}, id="not-in-the-table"),
        pytest.param(Answer(404, {"error": "no such rider"}), {}, {}, id="lookup-404"),
        pytest.param(Answer(body={"name": "张三"}), {}, {}, id="lookup-without-the-field"),
        pytest.param(Answer(body={"phone": ""}), {}, {}, id="lookup-empty-field"),
        pytest.param(Answer(body={"phone": None}), {}, {}, id="lookup-null-field"),
        pytest.param(None, {"lookup_by": ["out_user_id"]}, {"out_user_id": ""},
                     id="no-out-user-id-and-no-fallback"),
    ],
)
def test_no_phone_is_done_and_skipped(
    arrears_router: RouterFactory, http_server: RecordingServer, lookup_server: RecordingServer,
    lookup_answer: Answer | None, settings: dict[str, Any], payment: dict[str, Any],
) -> None:
    if lookup_answer is not None:
        lookup_server.script(lookup_answer)
        settings = {"phones": {}, "lookup": {"url": f"{lookup_server.url}/r/{{rider_id}}"},
                    **settings}
    router = start(arrears_router, http_provider(http_server), **settings)
    delivery = sms(router.pay(**payment))
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 1)
    assert delivery.note == "skipped: no phone"
    assert http_server.requests == []  # nothing was texted


def test_a_lookup_500_is_retried_then_the_text_goes_once(
    arrears_router: RouterFactory, http_server: RecordingServer, lookup_server: RecordingServer
) -> None:
    lookup_server.script(Answer(500, {"error": "database down"}), Answer(body={"phone": PHONE}))
    lookup = {"url": f"{lookup_server.url}/riders/{{rider_id}}/phone"}
    router = start(arrears_router, http_provider(http_server), phones={}, lookup=lookup)
    delivery = sms(router.pay())
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 2)
    assert "RetryableError: phone lookup: HTTP 500" in delivery.error_before_done
    assert len(lookup_server.wait_for(2)) == 2
    assert len(http_server.requests) == 1


@pytest.mark.parametrize("answer", [
    Answer(500, {"error": f"replica lag; last value {PHONE}"}),
    Answer(200, f"phone={PHONE}".encode()),  # not JSON: quoted in the error
    Answer(200, {"data": {"mobile": "138 0000 0000 ext. 1"}, "phone": None}),
], ids=["500-quoting-it", "not-json", "field-missing"])
def test_a_lookup_error_that_quotes_a_phone_never_shows_it(
    arrears_router: RouterFactory, http_server: RecordingServer, lookup_server: RecordingServer,
    answer: Answer,
) -> None:
    """The rider's number is not known until the lookup answers: its errors are scrubbed of
    anything that looks like a mobile number."""
    lookup_server.default = answer
    lookup = {"url": f"{lookup_server.url}/riders/{{rider_id}}/phone", "field": "phone"}
    router = start(arrears_router, http_provider(http_server), phones={}, lookup=lookup,
                   max_attempts=1)
    delivery = sms(router.pay())  # assert_clean: no phone in its note or last error
    assert "138 0000 0000" not in delivery.last_error + delivery.note
    assert http_server.requests == []


def test_a_lookup_that_refuses_the_credentials_is_dead_at_once(
    arrears_router: RouterFactory, http_server: RecordingServer, lookup_server: RecordingServer
) -> None:
    lookup_server.script(Answer(401, {"error": "bad token"}))
    lookup = {"url": f"{lookup_server.url}/riders/{{rider_id}}/phone"}
    router = start(arrears_router, http_provider(http_server), phones={}, lookup=lookup,
                   lookup_by=["openid"])
    delivery = sms(router.pay())
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DEAD, 1)
    assert "PermanentError: phone lookup: HTTP 401" in delivery.last_error
    assert OPENID not in delivery.last_error  # the URL sent holds it: the configured one is named
    assert f"HTTP 401 from {lookup_server.url}/riders/{{rider_id}}/phone" in delivery.last_error


# -- Tencent Cloud SMS


def test_tencent_gets_the_exact_request_signed_as_its_sdk_signs(
    arrears_router: RouterFactory, http_server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMS_TEST_SECRET_KEY", SECRET_KEY)  # the key comes from ${ENV}
    http_server.default = Answer(body=tencent_ok())
    provider = tencent_provider(http_server, secret_key="${SMS_TEST_SECRET_KEY}",
                                template_param_set=["{yuan}", "{repay_no}", "{paid_at}"])
    router = start(arrears_router, provider)
    before = int(time.time())
    report = router.pay(total_fee=450)
    after = int(time.time())
    report.assert_done("sms")
    assert sms(report).note == f"sent to {MASKED} via tencent: SerialNo 2640:4386209931816112344"
    tx = report.transaction_id
    [request] = http_server.requests  # one text
    assert (request.method, request.path) == ("POST", "/")
    assert request.headers["x-tc-action"] == "SendSms"
    assert request.headers["x-tc-version"] == "2021-01-11"
    assert request.headers["x-tc-region"] == "ap-guangzhou"
    assert before <= int(request.headers["x-tc-timestamp"]) <= after
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "PhoneNumberSet": [PHONE], "SmsSdkAppId": "1400006666", "TemplateId": "1110",
        "TemplateParamSet": ["4.50", f"R{tx}", "2026-11-25 09:30:15"],
        "SessionContext": f"{MCH_ID}:{tx}:sms", "SignName": "乘车码",
    }
    assert request.headers["authorization"] == sdk_authorization(request)
    # Not a vacuous check: a changed body no longer matches.
    assert sdk_authorization(replace(request, body=request.body + b" ")) != (
        request.headers["authorization"])


@pytest.mark.parametrize(
    ("answers", "status", "attempt", "error"),
    [
        pytest.param([tencent_refusal("AuthFailure.SignatureFailure", "signature is wrong")],
                     DeliveryStatus.DEAD, 1,
                     "PermanentError: provider tencent: AuthFailure.SignatureFailure: "
                     "signature is wrong (RequestId a0aabda6-0002)", id="auth-permanent"),
        pytest.param([tencent_refusal("FailedOperation.TemplateIncorrectOrUnapproved", "no")],
                     DeliveryStatus.DEAD, 1, "FailedOperation.TemplateIncorrectOrUnapproved",
                     id="template-permanent"),
        pytest.param([tencent_refusal("InternalError.SendAndRecvFail", "timeout"),
                      tencent_ok()], DeliveryStatus.DONE, 2,
                     "RetryableError: provider tencent: InternalError.SendAndRecvFail",
                     id="internal-retried"),
        pytest.param([tencent_refusal("RequestLimitExceeded", "too many calls"), tencent_ok()],
                     DeliveryStatus.DONE, 2, "RetryableError: provider tencent: "
                     "RequestLimitExceeded", id="throttled-retried"),
        pytest.param([tencent_status("InvalidParameterValue.IncorrectPhoneNumber",
                                     f"{PHONE} is not a valid number")],
                     DeliveryStatus.DEAD, 1, f"IncorrectPhoneNumber: {MASKED} is not a valid",
                     id="per-number-bad-phone-permanent"),
        pytest.param([tencent_status("LimitExceeded.PhoneNumberDailyLimit", "daily limit")],
                     DeliveryStatus.DEAD, 1, "PermanentError: provider tencent: "
                     "LimitExceeded.PhoneNumberDailyLimit", id="per-number-daily-permanent"),
        pytest.param([Answer(body=b"<html>gateway</html>")], DeliveryStatus.DEAD, 1,
                     "PermanentError: provider tencent: unexpected answer", id="not-json"),
        pytest.param([Answer(503, {"error": "unavailable"}), tencent_ok()], DeliveryStatus.DONE,
                     2, "RetryableError: provider tencent: HTTP 503", id="http-503-retried"),
    ],
)
def test_tencent_answers(
    arrears_router: RouterFactory, http_server: RecordingServer, answers: list[Any],
    status: DeliveryStatus, attempt: int, error: str,
) -> None:
    http_server.script(*(a if isinstance(a, Answer) else Answer(body=a) for a in answers))
    http_server.default = Answer(body=tencent_ok())
    router = start(arrears_router, tencent_provider(http_server))
    delivery = sms(router.pay())
    assert (delivery.status, delivery.attempt) == (status, attempt)
    assert error in error_of(delivery)
    # At most once (Tencent's default), yet each refusal left the retry free to send.
    assert len(http_server.requests) == attempt


def test_tencent_thirty_second_limit_retries_in_thirty_seconds(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    http_server.script(Answer(body=tencent_status(
        "LimitExceeded.PhoneNumberThirtySecondLimit", "30 second limit")))
    router = start(arrears_router, tencent_provider(http_server))
    transaction_id = "4200000000000000000000000042"
    router.send(sample_payload(transaction_id))
    delivery = first_failure(router, transaction_id)
    assert_clean(delivery)
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.PENDING, 1)
    assert "RetryableError: provider tencent: LimitExceeded" in delivery.last_error
    # Both from the same clock reading in the store: exactly the retry_after asked for.
    assert (delivery.next_at - delivery.updated_at).total_seconds() == pytest.approx(30.0)


def test_no_phone_or_key_in_logs_notes_or_errors_on_any_path(
    arrears_router: RouterFactory, http_server: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    http_server.script(
        Answer(500, {"error": f"upstream lost {PHONE}"}),  # retried
        Answer(body=tencent_ok()),  # sent
        Answer(400, {"error": f"bad number 8613800000000 key {SECRET_KEY}"}),  # dead
        Answer(body=tencent_status("InvalidParameterValue.IncorrectPhoneNumber",
                                   f"number {PHONE} (13800000000) is wrong")),  # dead
    )
    router = start(arrears_router, tencent_provider(http_server))
    reports = [router.pay(), router.pay(), router.pay()]
    for report in reports:
        sms(report)  # each record checked
    assert [sms(r).status for r in reports] == [
        DeliveryStatus.DONE, DeliveryStatus.DEAD, DeliveryStatus.DEAD]
    assert MASKED in sms(reports[2]).last_error and "****" in sms(reports[1]).last_error
    # The paths were logged (sent, retried, dead), and no_leaks checks every line of it.
    assert f"sent to {MASKED}" in caplog.text
    assert "retry in" in caplog.text
    assert caplog.text.count("is dead") == 2


# -- once: a text is never sent twice, and at most once where it may have gone unseen

UNKNOWN = "not done again: an earlier attempt's outcome is unknown (at most once)"


def in_store(router: TestRouter, use: Callable[[Store], Awaitable[Any]]) -> Any:
    """``use`` the router's store through a connection of its own, as another process
    sharing the file would."""
    async def run() -> Any:
        store = open_store(router.config.store.url)
        await store.open()
        try:
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(run())


def effect(router: TestRouter, transaction_id: str) -> EffectRecord | None:
    return in_store(router, lambda store: store.effect(f"{MCH_ID}:{transaction_id}:sms"))


def test_no_answer_after_tencent_got_the_text_is_not_sent_again_but_flagged(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    """At most once, Tencent's default: the text may have gone out, so the retry does not
    send it again, and a person is asked to check."""
    http_server.script(Answer(body=tencent_ok(), delay=2.0))  # received, answered too late
    http_server.default = Answer(body=tencent_ok())
    router = start(arrears_router, tencent_provider(http_server), request_timeout=0.3)
    report = router.pay()
    delivery = sms(report)
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 2)
    assert "no answer from" in delivery.error_before_done
    assert delivery.note.startswith(f"{UNKNOWN}; flagged: an attempt began at ")
    assert "check whether it happened" in delivery.note
    assert len(http_server.requests) == 1
    record = effect(router, report.transaction_id)
    assert record is not None and record.done_at is None  # still unknown: never made done


def test_no_answer_is_sent_again_with_the_same_key_at_least_once(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    http_server.script(Answer(body=tencent_ok(), delay=2.0))
    http_server.default = Answer(body=tencent_ok())
    router = start(arrears_router, tencent_provider(http_server, at_most_once=False),
                   request_timeout=0.3)
    report = router.pay()
    delivery = sms(report)
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 2)
    assert delivery.note.startswith(f"sent to {MASKED} via tencent")
    first, again = http_server.requests
    assert first.json()["SessionContext"] == again.json()["SessionContext"] == (
        f"{MCH_ID}:{report.transaction_id}:sms")
    record = effect(router, report.transaction_id)
    assert record is not None and record.done_at is not None


def test_a_replayed_done_delivery_texts_no_one_again(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    http_server.default = Answer(body=tencent_ok())
    router = start(arrears_router, tencent_provider(http_server))
    report = router.pay()
    report.assert_done("sms")
    again = router.redeliver(report)
    delivery = sms(again)
    assert (delivery.status, delivery.replays) == (DeliveryStatus.DONE, 1)
    assert delivery.note.startswith("done already at ")
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(("at_most_once", "texts"), [(True, 0), (False, 1)],
                         ids=["at-most-once", "at-least-once"])
def test_a_crash_between_began_and_done_is_an_unknown_outcome(
    arrears_router: RouterFactory, http_server: RecordingServer, at_most_once: bool, texts: int,
) -> None:
    """A router that crashed after recording the text begun, before recording it done,
    leaves this in the store; the next attempt, in whichever process, finds it."""
    http_server.default = Answer(body=tencent_ok())
    router = start(arrears_router, tencent_provider(http_server, at_most_once=at_most_once))
    transaction_id = "4200000000000000000000000077"
    key = f"{MCH_ID}:{transaction_id}:sms"
    assert in_store(router, lambda store: store.begin_effect(key)) is None
    delivery = sms(router.pay(transaction_id=transaction_id))
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DONE, 1)
    assert len(http_server.requests) == texts
    if at_most_once:
        assert delivery.note.startswith(f"{UNKNOWN}; flagged: ")
        # The operator, looking, sees the text begun and never done.
        shown = cli("deliveries", "show", str(delivery.id), config=router.config_path,
                    check=True).stdout
        assert re.search(r"^  effect +begun .*, not recorded done", shown, re.M)
        [as_json] = cli_json("deliveries", "show", str(delivery.id), config=router.config_path)
        assert as_json["effect"]["idempotency_key"] == key
        assert as_json["effect"]["done_at"] is None
    else:
        assert delivery.note.startswith(f"sent to {MASKED}")


def test_a_refused_connection_sent_nothing_and_never_blocks_the_retry(
    arrears_router: RouterFactory, http_server: RecordingServer, refused_url: str
) -> None:
    router = start(arrears_router, tencent_provider(http_server, endpoint=refused_url),
                   max_attempts=2)
    report = router.pay()
    delivery = sms(report)
    # The second attempt tried to send as well: not held back as of unknown outcome.
    assert (delivery.status, delivery.attempt) == (DeliveryStatus.DEAD, 2)
    assert delivery.last_error.startswith(
        "gave up after 2 attempts: RetryableError: provider tencent: ConnectError")
    assert effect(router, report.transaction_id) is None


# -- where it failed


def test_a_failure_keeps_where_it_failed_and_still_no_phone(
    arrears_router: RouterFactory, http_server: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    http_server.script(Answer(body=tencent_status("InvalidParameterValue.IncorrectPhoneNumber",
                                                  f"{PHONE} is not a valid number")))
    router = start(arrears_router, tencent_provider(http_server))
    delivery = sms(router.pay())  # assert_clean: no phone in the traceback either
    assert delivery.status is DeliveryStatus.DEAD
    trace = delivery.last_traceback
    assert trace.startswith("Traceback (most recent call last):")
    # Where Tencent's refusal was read, not only where the plugin rewrote its message.
    assert "in _tencent_outcome" in trace
    assert trace.endswith(f"{delivery.last_error}")
    assert MASKED in trace
    [dead] = [r.getMessage() for r in caplog.records if "is dead" in r.getMessage()]
    assert trace in dead  # logged with it too; no_leaks checks every line


# -- rate, lifecycle, settings


def test_the_rate_limit_spreads_a_burst_of_payments(
    arrears_router: RouterFactory, timed_server: TimedServer
) -> None:
    router = start(arrears_router, http_provider(timed_server), rate_limit=2.0, burst=1)
    transaction_ids = [f"42000000000000000000000001{n:02d}" for n in range(5)]
    for transaction_id in transaction_ids:  # all stored before any is sent: concurrent sends
        router.send(sample_payload(transaction_id))
    for transaction_id in transaction_ids:
        assert router.settle(transaction_id)["sms"].status is DeliveryStatus.DONE
    arrivals = timed_server.arrivals
    assert len(arrivals) == 5
    # 2 a second with a burst of 1: a send every 0.5 s at the soonest, so 5 take >= 2 s.
    # Lower bounds only; 0.1 s allows for one request's trip being slower than another's.
    assert arrivals[-1] - arrivals[0] >= 2.0 - 0.1
    assert all(b - a >= 0.5 - 0.1 for a, b in itertools.pairwise(arrivals))


def test_the_client_opens_with_the_router_and_closes_with_it(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_provider(http_server))
    plugin = router.router.registry.plugins["sms"].instance
    assert isinstance(plugin, Sms)
    client = plugin.client
    assert not client.is_closed
    router.stop()
    assert client.is_closed
    with pytest.raises(RetryableError, match="not started"):
        plugin.client  # noqa: B018 - the property raises once the router has stopped


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        pytest.param({"phones": {}}, "plugins.sms: set `phones`, `lookup`, or both",
                     id="nowhere-to-find-a-phone"),
        pytest.param({"message": "{yuann}元"}, "plugins.sms: message: unknown field {yuann}",
                     id="misspelt-placeholder"),
        pytest.param({"provider": {"type": "carrier-pigeon"}}, "plugins.sms.provider.type",
                     id="unknown-provider"),
        pytest.param({"provider": {"type": "tencent", "secret_id": "x"}},
                     "plugins.sms.provider.secret_key: required key is missing",
                     id="tencent-without-key"),
        pytest.param({"rate_limit": 0}, "plugins.sms.rate_limit", id="no-rate"),
        pytest.param({"lookup": {"url": "https://accounts.example/riders/{rider}"}},
                     "plugins.sms: lookup.url: unknown field {rider}; known: appid",
                     id="lookup-url-unknown-field"),
        pytest.param({"provider": {"type": "http", "url": "sms.example/send?key=k"}},
                     "plugins.sms: provider.url: 'sms.example/send' is not an http:// or"
                     " https:// URL with a host", id="provider-url-not-absolute"),
        pytest.param({"provider": {"type": "tencent", "secret_id": "i", "secret_key": "k",
                                   "sdk_app_id": "1", "template_id": "1",
                                   "endpoint": "https://i:k@sms.tencentcloudapi.com"}},
                     "plugins.sms: provider.endpoint: has credentials in it",
                     id="endpoint-with-credentials"),
    ],
)
def test_bad_settings_stop_start_up_naming_the_key(
    arrears_router: RouterFactory, http_server: RecordingServer, settings: dict[str, Any],
    error: str,
) -> None:
    provider = settings.pop("provider", http_provider(http_server))
    with pytest.raises(RegistryError, match=re.escape(error)):
        start(arrears_router, provider, **settings)
