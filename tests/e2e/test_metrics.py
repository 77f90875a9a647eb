"""``GET /metrics`` on the admin listener of a real ``serve``, with a ``worker`` beside it:
after a known mix of notifications and deliveries every value scraped is exact, each counted
by the process that decided it and summed over all of them; a restart of ``serve`` takes
nothing back (its exited processes' counts are kept, folded)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from arrears_router.config import load_config
from arrears_router.metrics import CONTENT_TYPE, exposition
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import RouterProcess, wait_until, write_config
from tests.test_metrics import ERRCODES, Series, files_of, scraped, value

TOKEN = "metrics-e2e-read-token-0123456789"
PAYMENTS = 5
DUPLICATES = 2
PLUGINS = ("quick", "flaky", "refusing")


def config_for(tmp_path: Path) -> Path:
    return write_config(
        tmp_path / "config.toml",
        server={"host": "127.0.0.1", "port": 0},
        admin={"port": 0, "metrics_dir": str(tmp_path / "metrics"),
               "tokens": [{"name": "ops", "scope": "read", "token": TOKEN}]},
        plugins={
            "quick": {"use": "tests.sample_plugins:SyncRecorder",
                      "path": str(tmp_path / "quick.log")},
            # Fails its first attempt, asking to be retried at once; done at the second.
            "flaky": {"use": "tests.sample_plugins:Recorder", "path": str(tmp_path / "flaky.log"),
                      "fail_attempts": 1, "retry_after": 0.0},
            "refusing": {"use": "tests.sample_plugins:Recorder",
                         "path": str(tmp_path / "refusing.log"), "permanent": True},
        },
    )


def send_the_mix(url: str, notifier: Notifier) -> None:
    """Payments, duplicates of some, and one of each refusal the router can meet."""
    payments = [sample_payload(f"TX-METRICS-{n}") for n in range(PAYMENTS)]
    tampered = json.loads(notifier.notification(sample_payload("TX-TAMPERED")))
    tampered["sign"] = "0" * 64
    undecryptable = notifier.signed(notifier.envelope(b"{}", encrypted_data="not*base64"))
    sent = [
        *((notifier.notification(p), 0) for p in payments),
        *((notifier.notification(p), 0) for p in payments[:DUPLICATES]),  # re-encrypted
        (b"[]", 40001),
        (json.dumps(tampered).encode(), 40003),
        (json.dumps(undecryptable).encode(), 40004),
        (b"x" * 70_000, 41300),  # over max_body_bytes: answered by the HTTP process unread
    ]
    with httpx.Client(timeout=30) as client:
        for body, errcode in sent:
            reply = client.post(url, content=body, headers={"content-type": "application/json"})
            assert reply.json()["errcode"] == errcode, reply.text


def expected_values() -> dict[Series, float]:
    """What the mix must come to, series by series."""
    answered = {"0": PAYMENTS + DUPLICATES, "40001": 1, "40003": 1, "40004": 1, "41300": 1}
    expected: dict[Series, float] = {}

    def expect(name: str, count: float, **labels: str) -> None:
        expected[name, frozenset(labels.items())] = count

    for code in ERRCODES:
        expect("arrears_notifications_total", answered.get(code, 0), errcode=code)
    expect("arrears_quarantine_total", 1, errcode="40004")
    expect("arrears_quarantine_total", 0, errcode="40005")
    expect("arrears_quarantine_kept", 1)
    expect("arrears_accept_duration_seconds_count", sum(answered.values()))
    attempts = {("quick", "done"): PAYMENTS, ("flaky", "retry"): PAYMENTS,
                ("flaky", "done"): PAYMENTS, ("refusing", "dead"): PAYMENTS}
    for plugin in PLUGINS:
        for outcome in ("done", "retry", "dead", "lost"):
            expect("arrears_delivery_attempts_total", attempts.get((plugin, outcome), 0),
                   plugin=plugin, outcome=outcome)
        expect("arrears_delivery_duration_seconds_count",
               sum(n for (p, _), n in attempts.items() if p == plugin), plugin=plugin)
        expect("arrears_deliveries", 0, plugin=plugin, status="pending")
    expect("arrears_deliveries", PAYMENTS, plugin="quick", status="done")
    expect("arrears_deliveries", PAYMENTS, plugin="flaky", status="done")
    expect("arrears_deliveries", PAYMENTS, plugin="refusing", status="dead")
    expect("arrears_deliveries", 0, plugin="refusing", status="done")
    return expected


def scrape(admin_url: str) -> dict[Series, float]:
    answer = httpx.get(f"{admin_url}/metrics", timeout=30)  # no token: scrapers send none
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == CONTENT_TYPE
    return scraped(answer.content)


def counted_by(pid: int | str, directory: Path, scratch: Path) -> dict[Series, float]:
    """What one process counted: its own files, read alone."""
    alone = scratch / f"counted-by-{pid}"
    alone.mkdir(exist_ok=True)
    for file in directory.glob(f"*_{pid}.db"):
        shutil.copy(file, alone / file.name)
    return scraped(exposition(alone))


def test_scraped_values_are_exact_and_summed_over_every_process(
    tmp_path: Path, start_process: Callable[..., RouterProcess],
) -> None:
    config = config_for(tmp_path)
    metrics = tmp_path / "metrics"
    serve = start_process(config, "serve", "--port", "0", "--no-dispatch")
    worker = start_process(config, "worker")  # it alone delivers
    assert serve.admin_url, f"serve announced no admin listener\n{serve.output()}"
    callback = serve.url + load_config(config).server.callback_path

    send_the_mix(callback, Notifier(load_config(config).merchants[0]))

    expected = expected_values()

    def scraped_as_expected() -> bool:
        samples = scrape(serve.admin_url)
        return {series: samples.get(series) for series in expected} == expected

    wait_until(scraped_as_expected, "every delivery done or dead, and counted")
    samples = scrape(serve.admin_url)
    assert {series: samples.get(series) for series in expected} == expected
    assert not any(name == "arrears_delivery_oldest_pending_timestamp_seconds"
                   for name, _ in samples)  # none pending
    assert not {label for _, labels in samples for label, _ in labels} - {
        "errcode", "plugin", "outcome", "status", "le"}  # never an id

    # Each counted what it decided: the HTTP process the reply it gave unread and every
    # request's time, the engine what it read, the worker the deliveries.
    http = counted_by(serve.pid, metrics, tmp_path)
    assert value(http, "arrears_notifications_total", errcode="41300") == 1
    assert value(http, "arrears_notifications_total", errcode="0") == 0
    assert value(http, "arrears_accept_duration_seconds_count") == PAYMENTS + DUPLICATES + 4
    others = files_of(metrics) - {str(serve.pid), str(worker.pid)}
    (engine,) = [pid for pid in others if counted_by(pid, metrics, tmp_path).get(
        ("arrears_notifications_total", frozenset({("errcode", "0")}))) == PAYMENTS + DUPLICATES]
    by_engine = counted_by(engine, metrics, tmp_path)
    assert value(by_engine, "arrears_quarantine_total", errcode="40004") == 1
    assert value(by_engine, "arrears_notifications_total", errcode="41300") == 0
    delivered = counted_by(worker.pid, metrics, tmp_path)
    assert value(delivered, "arrears_delivery_attempts_total", plugin="flaky",
                 outcome="retry") == PAYMENTS
    assert value(delivered, "arrears_notifications_total", errcode="0") == 0

    # A restart folds the exited processes' counts: no sum goes down, none is counted twice.
    old_pid = serve.pid
    serve.restart()
    assert scrape(serve.admin_url) == pytest.approx(samples)  # sums of times: added anew
    assert str(old_pid) not in files_of(metrics)
    assert str(engine) not in files_of(metrics)
    assert "archive" in files_of(metrics)
