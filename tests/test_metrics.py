"""The metrics: counted by real child processes into one folder and summed by a scrape
exactly; the folder kept from growing without any sum going down; a scrape's series as many
for 10,000 payments as for 10.

Only spawned children count into a folder: ``use_metrics_dir`` sets a variable that every
process started afterwards inherits, which the tests' own process must not carry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from arrears_router.admin.metrics import metrics_route, sample_store
from arrears_router.config import Config, parse_config
from arrears_router.metrics import (
    CONTENT_TYPE,
    MetricsDirError,
    Outcome,
    clear_dead,
    count_attempt,
    count_notification,
    count_quarantined,
    exposition,
    metrics_dir,
    observe_accept,
    use_metrics_dir,
)
from arrears_router.platform.runtime import Router
from arrears_router.store import (
    ClaimLimit,
    DeliveryResult,
    DeliveryStatus,
    Mode,
    PluginRoute,
    Store,
    open_store,
)
from arrears_router.testkit import toml_text
from arrears_router.wire.notifier import Notifier, sample_payload
from tests.harness import MERCHANT, arrive
from tests.store.records import entry, event, payment

Series = tuple[str, frozenset[tuple[str, str]]]
"""A sample's name and labels: one series of a scrape."""

SPAWN = multiprocessing.get_context("spawn")
CHILD_DEADLINE_S = 120.0
"""A failure bound only: a child is waited for until it ends."""
ERRCODES = ("0", "40001", "40002", "40003", "40004", "40005", "40009", "41300", "50001")


@pytest.fixture(autouse=True)
def children_import_the_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spawned child takes this process's import path, and imports its target by name."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))


def scraped(text: bytes) -> dict[Series, float]:
    """Every sample of a scrape, by series."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def value(samples: dict[Series, float], name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def run_child(target: Callable[..., None], *args: Any) -> None:
    """Run ``target(*args)`` in a new interpreter, to its end; fail if it failed."""
    child = SPAWN.Process(target=target, args=args)
    child.start()
    child.join(CHILD_DEADLINE_S)
    assert child.exitcode == 0, f"{target.__name__} exited {child.exitcode}"


def files_of(directory: Path) -> set[str]:
    """Whose files the folder holds: process ids, or ``archive`` for the folded ones."""
    return {f.stem.rpartition("_")[2] for f in directory.glob("*.db")}


# -- what the children do (at module level: a spawned child imports them by name)


def count_first_mix(directory: str) -> None:
    use_metrics_dir(Path(directory))
    for _ in range(3):
        count_notification(0)
    count_notification(40003)
    count_notification(40004)
    count_quarantined(40004)
    observe_accept(0.003)
    observe_accept(0.04)
    count_attempt("ledger", Outcome.DONE, 0.02)
    count_attempt("ledger", Outcome.DONE, 0.02)


def count_second_mix(directory: str) -> None:
    use_metrics_dir(Path(directory))
    count_notification(0)
    count_notification(0)
    count_notification(41300)
    observe_accept(0.0005)
    count_attempt("ledger", Outcome.RETRY, 2.0)
    count_attempt("sms", Outcome.DEAD, 0.5)
    count_attempt("sms", Outcome.LOST, 40.0)


def count_and_stay(directory: str, counted: Event, leave: Event) -> None:
    use_metrics_dir(Path(directory))
    count_notification(0)
    counted.set()
    leave.wait(CHILD_DEADLINE_S)


def route_payments(directory: str, config_text: str, payments: int) -> None:
    """A router in this process takes ``payments`` notifications and a fixed mix of others,
    delivers each payment to a plugin that takes it and one that refuses it for good, and
    stops once every delivery is over."""
    logging.disable(logging.CRITICAL)  # a dead delivery a payment: thousands of lines
    use_metrics_dir(Path(directory))
    asyncio.run(_route(parse_config(config_text, Path(directory)), payments))


async def _route(config: Config, payments: int) -> None:
    notifier = Notifier(config.merchants[0])
    bodies = [notifier.notification(sample_payload(f"TX-{n:05d}")) for n in range(payments)]
    tampered = json.loads(bodies[0])
    tampered["sign"] = "0" * 64
    undecryptable = notifier.signed(notifier.envelope(b"{}", encrypted_data="not*base64"))
    refused = [b"[]", json.dumps(tampered).encode(), json.dumps(undecryptable).encode()]
    async with Router(config, autoload=False).running() as router:
        for start in range(0, payments, 500):  # a burst at a time: group-committed
            await asyncio.gather(*map(router.receive, bodies[start:start + 500]))
        for body in [bodies[0], *refused]:
            await router.receive(body)

        async def settled() -> bool:
            return not any(state.pending for state in await router.store.plugin_states())

        await arrive(settled, "every delivery done or dead")


def expect_summed(samples: dict[Series, float]) -> None:
    """What the two mixes add up to."""
    notifications = {"0": 5, "40003": 1, "40004": 1, "41300": 1}
    for code in ERRCODES:
        assert value(samples, "arrears_notifications_total", errcode=code) == (
            notifications.get(code, 0)), code
    assert value(samples, "arrears_quarantine_total", errcode="40004") == 1
    assert value(samples, "arrears_quarantine_total", errcode="40009") == 0
    assert value(samples, "arrears_accept_duration_seconds_count") == 3
    assert value(samples, "arrears_accept_duration_seconds_sum") == pytest.approx(0.0435)
    assert value(samples, "arrears_accept_duration_seconds_bucket", le="0.001") == 1
    assert value(samples, "arrears_accept_duration_seconds_bucket", le="0.005") == 2
    assert value(samples, "arrears_accept_duration_seconds_bucket", le="0.05") == 3
    attempts = {("ledger", "done"): 2, ("ledger", "retry"): 1, ("sms", "dead"): 1,
                ("sms", "lost"): 1}
    for plugin in ("ledger", "sms"):
        for outcome in Outcome:
            assert value(samples, "arrears_delivery_attempts_total", plugin=plugin,
                         outcome=outcome) == attempts.get((plugin, outcome), 0)
    assert value(samples, "arrears_delivery_duration_seconds_count", plugin="ledger") == 3
    assert value(samples, "arrears_delivery_duration_seconds_sum",
                 plugin="ledger") == pytest.approx(2.04)
    assert value(samples, "arrears_delivery_duration_seconds_bucket", plugin="ledger",
                 le="0.025") == 2
    assert value(samples, "arrears_delivery_duration_seconds_bucket", plugin="sms",
                 le="30.0") == 1  # the lost attempt's 40 s call is past it
    assert value(samples, "arrears_delivery_duration_seconds_bucket", plugin="sms",
                 le="60.0") == 2


# -- counting across processes


def test_what_two_processes_count_is_summed_exactly(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    run_child(count_first_mix, str(directory))
    run_child(count_second_mix, str(directory))

    assert len(files_of(directory)) == 2  # each process wrote files of its own
    expect_summed(scraped(exposition(directory)))


def test_exited_processes_files_are_folded_and_no_sum_goes_down(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    run_child(count_first_mix, str(directory))
    run_child(count_second_mix, str(directory))
    before = scraped(exposition(directory))

    clear_dead(directory)

    assert files_of(directory) == {"archive"}  # a file a kind, however many restarts
    assert scraped(exposition(directory)) == before
    run_child(count_first_mix, str(directory))  # a restart: it adds to what was kept
    clear_dead(directory)
    again = scraped(exposition(directory))
    assert value(again, "arrears_notifications_total", errcode="0") == 8
    assert value(again, "arrears_delivery_duration_seconds_count", plugin="ledger") == 5
    assert files_of(directory) == {"archive"}


def test_a_running_process_keeps_its_files(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    counted, leave = SPAWN.Event(), SPAWN.Event()
    child = SPAWN.Process(target=count_and_stay, args=(str(directory), counted, leave))
    child.start()
    try:
        assert counted.wait(CHILD_DEADLINE_S), "the child did not count"
        clear_dead(directory)
        assert files_of(directory) == {str(child.pid)}
    finally:
        leave.set()
        child.join(CHILD_DEADLINE_S)
    clear_dead(directory)
    assert files_of(directory) == {"archive"}
    assert value(scraped(exposition(directory)), "arrears_notifications_total",
                 errcode="0") == 1


def test_a_scrape_before_anything_was_counted_is_empty(tmp_path: Path) -> None:
    assert exposition(tmp_path / "not-yet") == b""
    clear_dead(tmp_path / "not-yet")  # nothing to clear, nothing made


# -- the folder


def test_the_default_folder_is_one_a_store_in_the_temporary_one() -> None:
    url = "postgresql://router:secret@db.example:5432/arrears?sslmode=require"
    found = metrics_dir(url)
    assert found.parent == Path(tempfile.gettempdir())
    assert found.name.startswith("arrears-router-metrics-")
    assert found == metrics_dir(url)
    assert found != metrics_dir("postgresql://router:secret@db.example:5432/other")
    assert metrics_dir("sqlite:////srv/a.db") != metrics_dir("sqlite:////srv/b.db")
    assert metrics_dir(url, "/var/lib/arrears/metrics") == Path("/var/lib/arrears/metrics")


def test_no_password_goes_into_the_folders_name() -> None:
    """A folder's name is seen by every user of the host; a short hash can be guessed."""
    assert metrics_dir("postgresql://router:secret@db.example/arrears") == metrics_dir(
        "postgresql://router:other@db.example/arrears")
    assert metrics_dir("postgresql://db.example/arrears?user=r&password=secret") == (
        metrics_dir("postgresql://db.example/arrears?user=r&password=other"))


def test_a_new_folder_is_private(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    run_child(count_first_mix, str(directory))
    assert directory.stat().st_mode & 0o777 == 0o700


def test_a_link_or_another_users_folder_is_refused(tmp_path: Path) -> None:
    """Refused before anything changes: this process is left as it was."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(MetricsDirError, match="is not a folder"):
        use_metrics_dir(tmp_path / "link")
    if os.getuid() != 0:
        return  # only root can give a folder away
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(MetricsDirError, match="belongs to another user"):
        use_metrics_dir(theirs)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


# -- the store's gauges, and the route


@pytest.mark.anyio
async def test_the_route_serves_the_counts_and_the_stores_state(
    store: Store, tmp_path: Path,
) -> None:
    directory = tmp_path / "metrics"
    await asyncio.to_thread(run_child, count_first_mix, str(directory))
    await store.sync_plugins([PluginRoute("ledger", Mode.ENABLED),
                              PluginRoute("sms", Mode.ENABLED)])
    before = datetime.now(UTC)
    for n in range(3):
        await store.accept(event(payment(f"TX-{n}")))
    after = datetime.now(UTC)
    claimed = await store.claim({"ledger": ClaimLimit(3, 30.0)})
    await store.finish([DeliveryResult(id=c.id, token=c.token, status=DeliveryStatus.DONE)
                        for c in claimed])
    await store.quarantine(entry(b"kept"))
    app = Litestar(route_handlers=[metrics_route(store, directory)])
    async with AsyncTestClient(app) as client:
        answer = await client.get("/metrics")

    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE
    samples = scraped(answer.content)
    assert value(samples, "arrears_notifications_total", errcode="0") == 3  # the child's
    assert value(samples, "arrears_deliveries", plugin="ledger", status="done") == 3
    assert value(samples, "arrears_deliveries", plugin="ledger", status="pending") == 0
    assert value(samples, "arrears_deliveries", plugin="sms", status="pending") == 3
    assert value(samples, "arrears_deliveries", plugin="sms", status="dead") == 0
    oldest = value(samples, "arrears_delivery_oldest_pending_timestamp_seconds", plugin="sms")
    assert before.timestamp() - 1 <= oldest <= after.timestamp() + 1  # the store's clock
    assert ("arrears_delivery_oldest_pending_timestamp_seconds",
            frozenset({("plugin", "ledger")})) not in samples  # none pending: absent
    assert value(samples, "arrears_quarantine_kept") == 1
    assert value(samples, "arrears_quarantine_kept_bytes") == len(b"kept")


# -- cardinality


def series_after(payments: int, directory: Path) -> set[Series]:
    """The series a scrape has once a router has taken ``payments`` (and its store's)."""
    store_url = f"sqlite:///{directory / 'store.db'}"
    config = toml_text({
        "store": {"url": store_url}, "merchants": [MERCHANT],
        "plugins": {
            "quick": {"use": "tests.sample_plugins:SyncRecorder",
                      "path": str(directory / "quick.log")},
            "refusing": {"use": "tests.sample_plugins:Recorder",
                         "path": str(directory / "refusing.log"), "permanent": True},
        },
    })
    metrics = directory / "metrics"
    run_child(route_payments, str(metrics), config, payments)

    async def sampled() -> bytes:
        store = open_store(store_url, readonly=True)
        await store.open()
        try:
            return exposition(metrics, await sample_store(store))
        finally:
            await store.close()

    samples = scraped(asyncio.run(sampled()))
    assert value(samples, "arrears_notifications_total", errcode="0") == payments + 1
    assert value(samples, "arrears_delivery_attempts_total", plugin="quick",
                 outcome="done") == payments
    assert value(samples, "arrears_deliveries", plugin="refusing", status="dead") == payments
    return set(samples)


def test_series_are_as_many_for_10000_payments_as_for_10(tmp_path: Path) -> None:
    few = series_after(10, tmp_path / "few")
    many = series_after(10_000, tmp_path / "many")
    assert many == few
    assert len(few) < 200
    labels = {label for _, pairs in few for label, _ in pairs}
    assert labels == {"errcode", "plugin", "outcome", "status", "le"}
