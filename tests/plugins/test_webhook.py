"""The webhook plugin through real deliveries (the test kit's router) to a real local server.

Every signature is checked with the Standard Webhooks reference library, never with the
plugin's own code: a receiver using any Standard Webhooks library must accept our requests.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from arrears_router import ArrearsPayment
from arrears_router.platform.registry import Registry, RegistryError
from arrears_router.plugins.webhook import Webhook
from arrears_router.store import DeliveryStatus
from arrears_router.testkit import TestRouter
from tests.plugins.conftest import Answer, Recorded, RecordingServer

RouterFactory = Callable[..., TestRouter]
MCH_ID = "1900000109"  # the test kit's merchant


def new_secret(size: int = 32) -> str:
    """A secret as a Standard Webhooks sender hands it out: whsec_ and base64 of random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(size)).decode()


SECRET = new_secret()


def start(arrears_router: RouterFactory, url: str, **settings: Any) -> TestRouter:
    table = {"url": url, "secrets": [SECRET], **settings}
    return arrears_router({"webhook": table}, classes={"webhook": Webhook})


def verify(request: Recorded, secret: str = SECRET) -> Any:
    """The reference library's verdict: the parsed body, or WebhookVerificationError."""
    return StandardWebhook(secret).verify(request.body, request.headers)


class Received(msgspec.Struct):
    """What a receiver would decode the body into, with the router's own payment type."""

    type: str
    timestamp: datetime | None
    data: ArrearsPayment


# -- what is sent


def test_a_payment_arrives_as_signed_json_that_the_reference_library_verifies(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = arrears_router(  # found by name among the built-ins, as in production
        {"webhook": {"url": f"{http_server.url}/hooks/arrears", "secrets": [SECRET]}},
        autoload=True,
    )
    report = router.pay(total_fee=450)
    report.assert_done("webhook")
    assert report.deliveries["webhook"].note == "HTTP 200"
    [request] = http_server.requests
    assert (request.method, request.path) == ("POST", "/hooks/arrears")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == f"{MCH_ID}:{report.transaction_id}:webhook"
    assert request.headers["webhook-timestamp"].isdigit()
    assert verify(request) == request.json()


def test_the_body_is_the_envelope_with_every_payment_field_typed(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url)
    report = router.pay(total_fee=450, time_end="20261125093015")
    [request] = http_server.requests
    body = request.json()
    assert body["type"] == "arrears.paid"
    assert body["timestamp"] == "2026-11-25T01:30:15Z"  # paid_at, 09:30:15 CST, in UTC
    data = body["data"]
    assert set(data) == set(ArrearsPayment.__struct_fields__)
    assert data["total_fee"] == 450
    assert type(data["total_fee"]) is int
    assert data["transaction_id"] == report.transaction_id
    assert data["mch_id"] == MCH_ID
    assert data["paid_at"] == "2026-11-25T09:30:15+08:00"
    assert data["order_no"] == [f"O{report.transaction_id}-1", f"O{report.transaction_id}-2"]
    assert data["order"][1]["out_order_no"] == f"BUS-{report.transaction_id}-2"
    # Strictly typed as the router's own payment type, as a receiver in Python would read it.
    received = msgspec.json.decode(request.body, type=Received)
    assert received.data.total_fee == 450
    assert received.data.order[0].order_no == f"O{report.transaction_id}-1"


def test_a_time_end_that_is_not_a_time_gives_a_null_timestamp(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url)
    router.pay(time_end="not a time").assert_done("webhook")
    body = http_server.requests[0].json()
    assert body["timestamp"] is None
    assert (body["data"]["time_end"], body["data"]["paid_at"]) == ("not a time", None)


def test_a_duplicate_delivery_sends_the_same_webhook_id_and_body(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url)
    report = router.exercise()  # a payment, then the duplicate delivery a crash would cause
    report.assert_done("webhook")
    assert report.deliveries["webhook"].replays == 1
    first, again = http_server.wait_for(2)
    assert first.headers["webhook-id"] == again.headers["webhook-id"] == (
        f"{MCH_ID}:{report.transaction_id}:webhook"
    )
    assert first.body == again.body  # the receiver can dedupe on the id: nothing else moved
    verify(first)
    verify(again)


def test_every_secret_signs_so_either_side_of_a_rotation_verifies(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    old, new = new_secret(24), new_secret(32)  # unpadded and padded base64, both accepted
    router = start(arrears_router, http_server.url, secrets=[old, new])
    router.pay().assert_done("webhook")
    [request] = http_server.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(request, old) == verify(request, new) == request.json()
    with pytest.raises(WebhookVerificationError):
        verify(request, new_secret())


def test_a_tampered_request_fails_verification(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url)
    router.pay(total_fee=300).assert_done("webhook")
    [request] = http_server.requests
    verify(request)
    body = request.body.replace(b'"total_fee":300', b'"total_fee":30000')
    assert body != request.body
    tampered = [
        Recorded(request.method, request.path, request.query, request.headers, body),
        Recorded(request.method, request.path, request.query,
                 {**request.headers, "webhook-id": request.headers["webhook-id"] + "x"},
                 request.body),
    ]
    for forged in tampered:
        with pytest.raises(WebhookVerificationError):
            verify(forged)


def test_extra_headers_are_sent(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url,
                   headers={"Authorization": "Bearer t0ken", "X-Source": "arrears"})
    router.pay().assert_done("webhook")
    [request] = http_server.requests
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.headers["x-source"] == "arrears"
    assert request.headers["user-agent"] == "arrears-router-webhook"
    verify(request)


def test_a_configured_user_agent_replaces_the_plugins(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    router = start(arrears_router, http_server.url, headers={"User-Agent": "crm-bridge/2"})
    router.pay().assert_done("webhook")
    assert http_server.requests[0].headers["user-agent"] == "crm-bridge/2"


def test_two_tables_of_the_plugin_fan_out_each_with_its_own_id_and_secret(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    crm_secret, erp_secret = new_secret(), new_secret()
    router = arrears_router({
        "crm": {"use": "arrears_router.plugins.webhook:Webhook", "url": f"{http_server.url}/crm",
                "secrets": [crm_secret]},
        "erp": {"use": "arrears_router.plugins.webhook:Webhook", "url": f"{http_server.url}/erp",
                "secrets": [erp_secret]},
    })
    report = router.pay()
    report.assert_done("crm", "erp")
    by_path = {request.path: request for request in http_server.wait_for(2)}
    assert by_path["/crm"].headers["webhook-id"] == f"{MCH_ID}:{report.transaction_id}:crm"
    assert by_path["/erp"].headers["webhook-id"] == f"{MCH_ID}:{report.transaction_id}:erp"
    verify(by_path["/crm"], crm_secret)
    verify(by_path["/erp"], erp_secret)
    with pytest.raises(WebhookVerificationError):
        verify(by_path["/crm"], erp_secret)


# -- what each answer means


def test_410_gone_is_dead_at_once(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    http_server.script(Answer(410, {"error": "gone"}))
    router = start(arrears_router, f"{http_server.url}/hook")
    dead = router.pay().deliveries["webhook"]
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 1)
    assert dead.last_error == (
        f'PermanentError: HTTP 410 from {http_server.url}/hook: {{"error": "gone"}}'
    )
    assert len(http_server.requests) == 1


@pytest.mark.parametrize(("answer", "error"), [
    (Answer(500, {"error": "boom"}), "RetryableError: HTTP 500 from"),
    (Answer(502), "RetryableError: HTTP 502 from"),
    # Other 4xx retry too, as Standard Webhooks and Svix do: a receiver mid-deploy or
    # misconfigured is usually fixed within the retry schedule.
    (Answer(404), "RetryableError: HTTP 404 from"),
    (Answer(401), "RetryableError: HTTP 401 from"),
    # A redirect is not followed (the spec: update the URL), but it is a failure, retried.
    (Answer(308, headers={"location": "/elsewhere"}), "redirects are not followed"),
], ids=["500", "502", "404", "401", "308"])
def test_a_failed_answer_is_retried_and_the_next_one_succeeds(
    arrears_router: RouterFactory, http_server: RecordingServer, answer: Answer, error: str
) -> None:
    http_server.script(answer)  # then the default: 200
    router = start(arrears_router, http_server.url)
    report = router.pay()
    report.assert_done("webhook")
    delivery = report.deliveries["webhook"]
    assert delivery.attempt == 2
    assert error in delivery.error_before_done
    first, second = http_server.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    verify(second)  # the retry is signed afresh, with its own timestamp


def test_429_retry_after_is_honoured_over_the_backoff(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    http_server.script(Answer(429, {"error": "slow down"}, headers={"Retry-After": "1"}))
    # A backoff of an hour: only the answer's Retry-After lets the retry come within the
    # test kit's wait.
    router = start(arrears_router, http_server.url, backoff=3600, backoff_cap=3600)
    report = router.pay()
    report.assert_done("webhook")
    assert report.deliveries["webhook"].attempt == 2
    assert report.deliveries["webhook"].error_before_done.startswith(
        "RetryableError: HTTP 429 from")


def test_an_answer_slower_than_request_timeout_is_retried(
    arrears_router: RouterFactory, http_server: RecordingServer
) -> None:
    http_server.script(Answer(delay=15))  # far past request_timeout; then answered at once
    router = start(arrears_router, f"{http_server.url}/hook", request_timeout=1.0, timeout=30)
    report = router.pay()
    report.assert_done("webhook")
    delivery = report.deliveries["webhook"]
    assert delivery.attempt == 2
    assert delivery.error_before_done == (
        f"RetryableError: no answer from {http_server.url}/hook "
        "within request_timeout 1 s"
    )


def test_a_refused_connection_is_retried_until_dead(
    arrears_router: RouterFactory, refused_url: str
) -> None:
    router = start(arrears_router, f"{refused_url}/hook", max_attempts=3)
    dead = router.pay().deliveries["webhook"]
    assert (dead.status, dead.attempt) == (DeliveryStatus.DEAD, 3)
    assert dead.last_error.startswith(
        f"gave up after 3 attempts: RetryableError: ConnectError: cannot reach {refused_url}/hook: "
    )


# -- secrets


def test_no_secret_or_header_value_reaches_the_logs_or_the_records(
    arrears_router: RouterFactory, http_server: RecordingServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    http_server.script(Answer(500))
    table = {"url": f"{http_server.url}/hook?token=q5ecret", "secrets": [SECRET],
             "headers": {"Authorization": "Bearer t0ken"}}
    router = arrears_router({"webhook": table}, classes={"webhook": Webhook})
    report = router.pay()
    report.assert_done("webhook")
    delivery = report.deliveries["webhook"]
    settings = msgspec.convert(table, Webhook.Settings)
    assert "HTTP 500" in caplog.text  # the failed attempt was logged: there was something to see
    shown = [caplog.text, delivery.error_before_done, delivery.traceback_before_done,
             delivery.note, repr(settings)]
    secret_part = SECRET.removeprefix("whsec_")
    for text in shown:
        assert secret_part not in text
        assert "t0ken" not in text
    # A token in the query stays out of the record, its traceback included.
    assert "q5ecret" not in delivery.error_before_done + delivery.traceback_before_done
    assert "HTTP 500" in delivery.error_before_done  # the record was looked at
    assert "<1 hidden>" in repr(settings)


def load(**settings: Any) -> Registry:
    table = {"url": "https://hooks.example/arrears", "secrets": [SECRET], **settings}
    return Registry.load({"webhook": table}, autoload=False, classes={"webhook": Webhook})


SHORT = "whsec_" + base64.b64encode(b"sixteen bytes!!!").decode()


@pytest.mark.parametrize(("settings", "message"), [
    ({"secrets": ["s3cr3t-without-prefix"]},
     "plugins.webhook: secrets[0]: not a Standard Webhooks secret: it must start with whsec_"),
    ({"secrets": [SECRET, "whsec_s3cr3t!not*base64"]},
     "plugins.webhook: secrets[1]: what follows whsec_ is not base64"),
    ({"secrets": [SHORT]},
     "plugins.webhook: secrets[0]: decodes to 16 bytes; a Standard Webhooks secret has 24 to 64"),
    ({"secrets": []}, "plugins.webhook.secrets: Expected `array` of length >= 1"),
    ({"url": "ftp://hooks.example/"},
     "plugins.webhook: url: 'ftp://hooks.example/' is not an http:// or https:// URL with a host"),
    ({"url": "https://user:s3cr3t@hooks.example/"},
     "plugins.webhook: url: has credentials in it; send them in `headers` instead"),
    ({"headers": {"Webhook-Signature": "v1,s3cr3t"}},
     "plugins.webhook: headers.Webhook-Signature: set by the plugin itself, it cannot be "
     "configured"),
    ({"headers": {"X-Token": "s3cr3t\r\nX-Evil: 1"}},
     "plugins.webhook: headers.X-Token: the value has a line break or NUL in it"),
    ({"request_timeout": 0}, "plugins.webhook.request_timeout: Expected `float` > 0.0"),
    ({"secret": SECRET}, "plugins.webhook.secret: unknown key"),
], ids=["prefix", "base64", "short", "none", "scheme", "userinfo", "reserved", "injection",
        "timeout", "unknown"])
def test_a_bad_setting_is_refused_at_load_naming_it(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistryError) as refused:
        load(**settings)
    assert str(refused.value) == message
    assert "s3cr3t" not in str(refused.value)  # the offending value is never echoed


def test_a_bad_secret_stops_the_router_starting(arrears_router: RouterFactory) -> None:
    with pytest.raises(RegistryError, match=r"^plugins\.webhook: secrets\[0\]: "):
        start(arrears_router, "https://hooks.example/", secrets=["not-a-whsec"])
