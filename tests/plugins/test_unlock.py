"""``unlock`` through real deliveries (the test kit's router) against a real local HTTP server:
the exact requests it sends, and what each kind of answer makes of the delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from arrears_router.platform.registry import RegistryError
from arrears_router.plugins.unlock import Unlock
from arrears_router.store import DeliveryRecord, DeliveryStatus
from arrears_router.testkit import TestRouter
from tests.plugins.conftest import Answer, RecordingServer

RouterFactory = Callable[..., TestRouter]
CLASSES = {"unlock": Unlock}
TOKEN = "s3cret-token-0123456789"
OPENID = "oRider0000000000000000000001"  # the test kit's sample payment's


def start(arrears_router: RouterFactory, url: str, **settings: Any) -> TestRouter:
    return arrears_router({"unlock": {"url": url, **settings}}, classes=CLASSES)


def unlock_once(router: TestRouter, **fields: Any) -> DeliveryRecord:
    return router.pay(**fields).deliveries["unlock"]


def key(transaction_id: str) -> str:
    return f"1900000109:{transaction_id}:unlock"


def test_unblocks_with_the_configured_request(
    arrears_router: RouterFactory, http_server: RecordingServer,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("UNLOCK_TEST_TOKEN", TOKEN)
    router = arrears_router({"unlock": {
        "url": http_server.url + "/riders/{out_user_id}/unblock",
        "headers": {"Authorization": "Bearer ${UNLOCK_TEST_TOKEN}", "X-Repay": "{repay_no}"},
    }}, autoload=True)  # found as a built-in, by name
    with caplog.at_level(logging.DEBUG, "arrears_router.plugin.unlock"):
        report = router.pay(total_fee=450, out_user_id="rider-7")
    report.assert_done("unlock")
    done = report.deliveries["unlock"]
    assert (done.attempt, done.note) == (1, "unlocked: HTTP 200")

    (request,) = http_server.requests
    tid = report.transaction_id
    assert (request.method, request.path) == ("POST", "/riders/rider-7/unblock")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"  # ${ENV} expanded by config
    assert request.headers["x-repay"] == f"R{tid}"
    assert request.headers["idempotency-key"] == key(tid)
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body == {  # the default body; a whole placeholder keeps its type
        "openid": OPENID, "out_user_id": "rider-7", "repay_no": f"R{tid}",
        "order_no": [f"O{tid}-1", f"O{tid}-2"], "total_fee": 450,
        "transaction_id": tid, "time_end": "20261125093015",
    }
    assert type(body["total_fee"]) is int

    # Logged, but never the secret header value or the whole openid.
    assert "unlocked transaction" in caplog.text
    assert "Authorization=***" in caplog.text
    assert TOKEN not in caplog.text
    assert OPENID not in caplog.text


def test_a_custom_method_body_and_idempotency_header(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(
        arrears_router, http_server.url + "/unblock?rider={out_user_id}", method="PUT",
        idempotency_header="X-Request-Id",
        body={"rider": "{openid}", "paid": {"fen": "{total_fee}", "yuan": "{yuan}"},
              "note": "paid {yuan} yuan for {order_nos}", "source": "arrears-router"},
    )
    report = router.pay(total_fee=1250, out_user_id="a/b c")
    report.assert_done("unlock")
    (request,) = http_server.requests
    assert (request.method, request.path) == ("PUT", "/unblock")
    assert request.query == {"rider": ["a/b c"]}  # percent-encoded, so it stays one value
    assert request.headers["x-request-id"] == key(report.transaction_id)
    assert "idempotency-key" not in request.headers
    tid = report.transaction_id
    assert request.json() == {
        "rider": OPENID, "paid": {"fen": 1250, "yuan": "12.50"},
        "note": f"paid 12.50 yuan for O{tid}-1,O{tid}-2", "source": "arrears-router",
    }


def test_a_field_in_the_url_path_is_percent_encoded(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/riders/{out_user_id}/unblock")
    unlock_once(router, out_user_id="../admin?x=1")
    (request,) = http_server.requests
    assert request.path == "/riders/..%2Fadmin%3Fx%3D1/unblock"
    assert request.query == {}


def test_an_empty_field_in_the_url_is_dead_without_a_request(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/riders/{out_user_id}/unblock")
    dead = unlock_once(router, out_user_id="")  # WeChat sends none without registration
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 1)
    assert dead.last_error == "PermanentError: url: out_user_id is empty in this payment"
    assert http_server.requests == []


def test_the_success_field_decides(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/unblock",
                   success_field="result.code", success_value=0)
    http_server.script(Answer(200, {"result": {"code": 0}}))
    assert unlock_once(router).status is DeliveryStatus.DONE

    http_server.script(Answer(200, {"result": {"code": 7, "msg": "rider under review"}}))
    dead = unlock_once(router)
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 1)
    assert dead.last_error.startswith("PermanentError: HTTP 200 but result.code is 7, not 0: ")
    assert "rider under review" in dead.last_error

    http_server.script(Answer(200, {"result": {"code": "0"}}))  # a string is not the number
    assert "result.code is \"0\", not 0" in unlock_once(router).last_error

    http_server.script(Answer(200, {"error": "nope"}))
    assert "the answer has no result.code" in unlock_once(router).last_error

    http_server.script(Answer(200, b"<html>maintenance</html>"))
    assert "the answer is not JSON" in unlock_once(router).last_error
    assert len(http_server.requests) == 5  # none of them retried


def test_listed_success_statuses_replace_2xx(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/unblock", success_status=[200, 409])
    http_server.script(Answer(409, {"error": "already unblocked"}))
    assert unlock_once(router).note == "unlocked: HTTP 409"
    http_server.script(Answer(202))
    dead = unlock_once(router)
    assert dead.status is DeliveryStatus.DEAD
    assert dead.last_error.startswith("PermanentError: HTTP 202 is not a success status [200, 409]")


def test_a_server_error_is_retried(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/riders/{openid}/unblock")
    http_server.script(Answer(500, {"error": "database down"}))
    report = router.pay()
    report.assert_done("unlock")
    done = report.deliveries["unlock"]
    assert done.attempt == 2
    # The URL in the error is the configured one: the path sent holds the openid.
    assert done.error_before_done == (f"RetryableError: HTTP 500 from {http_server.url}"
                               '/riders/{openid}/unblock: {"error": "database down"}')
    first, second = http_server.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == key(
        report.transaction_id)
    assert first.body == second.body


def test_a_slow_answer_times_out_and_is_retried(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/unblock", request_timeout=2)
    http_server.script(Answer(delay=60))  # past it and the router's 10 s: the error says whose
    done = unlock_once(router)
    assert (done.status, done.attempt) == (DeliveryStatus.DONE, 2)
    assert done.error_before_done == (f"RetryableError: no answer from {http_server.url}"
                               "/unblock within request_timeout 2 s")
    assert len(http_server.requests) == 2


def test_retry_after_is_honoured_over_the_backoff(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    # Both: the test kit caps the backoff at 0.2 s unless told otherwise.
    router = start(arrears_router, http_server.url + "/unblock", backoff=3600, backoff_cap=3600)
    http_server.script(Answer(429, {"error": "slow down"}, headers={"Retry-After": "1"}))
    done = unlock_once(router)  # an hour's backoff would not settle within the kit's wait
    assert (done.status, done.attempt) == (DeliveryStatus.DONE, 2)
    assert done.error_before_done.startswith("RetryableError: HTTP 429 ")


def test_a_client_error_is_dead_at_once_with_the_answer(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/unblock")
    http_server.script(Answer(400, {"error": "unknown rider rider-0001"}))
    dead = unlock_once(router)
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 1)
    assert dead.last_error == (f"PermanentError: HTTP 400 from {http_server.url}/unblock: "
                               '{"error": "unknown rider rider-0001"}')
    assert len(http_server.requests) == 1


def test_an_unreachable_account_system_is_retried_then_dead(
    arrears_router: RouterFactory, refused_url: str
) -> None:
    router = start(arrears_router, refused_url + "/unblock", max_attempts=3)
    dead = unlock_once(router)
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 3)
    assert dead.last_error.startswith(
        f"gave up after 3 attempts: RetryableError: ConnectError: cannot reach {refused_url}"
        "/unblock: ")


def test_a_duplicate_delivery_sends_the_same_idempotency_key(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/unblock")
    report = router.exercise()
    report.assert_done("unlock")
    assert report.deliveries["unlock"].replays == 1
    first, second = http_server.requests
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == key(
        report.transaction_id)
    assert first.json() == second.json()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "http://127.0.0.1:9/riders/{rider}"},
         "plugins.unlock: url: unknown field {rider}; known: appid, bank_type"),
        ({"url": "accounts.example/unblock"},
         "plugins.unlock: url: 'accounts.example/unblock' is not an http:// or https:// URL"),
        ({"url": "http://127.0.0.1:9/", "body": {"fee": "{total_fee_yuan}"}},
         "plugins.unlock: body: unknown field {total_fee_yuan}"),
        ({"url": "http://127.0.0.1:9/", "headers": {"X-Rider": "{rider"}},
         "plugins.unlock: headers: template '{rider':"),
        ({"url": "http://127.0.0.1:9/", "success_field": "code"},
         "plugins.unlock: success_field and success_value go together"),
        ({"url": "http://127.0.0.1:9/", "headers": {"idempotency-key": "x"}},
         "plugins.unlock: headers: Idempotency-Key is the idempotency_header"),
        ({"url": "http://127.0.0.1:9/", "method": "GET"},
         "plugins.unlock.method: Invalid enum value 'GET'"),
        ({"url": "http://127.0.0.1:9/", "request_timeout": 0},
         "plugins.unlock.request_timeout: Expected `float` > 0.0"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_it(
    arrears_router: RouterFactory, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(RegistryError) as caught:
        arrears_router({"unlock": settings}, classes=CLASSES)
    assert message in str(caught.value)


def test_a_header_value_that_cannot_be_sent_is_dead_without_a_request(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url + "/unblock",
                   headers={"X-Rider": "{out_user_id}"})
    dead = unlock_once(router, out_user_id="乘客-1")
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 1)
    assert dead.last_error == "PermanentError: headers: a value is not ASCII for this payment"
    assert http_server.requests == []
