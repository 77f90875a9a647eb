"""The admin API fuzzed from its own OpenAPI schema (schemathesis), on a real ``serve``: for
any request the schema allows, and many it does not, no answer is a server error, and every
answer is one the schema describes (status, content type, body).

Bounded: a few examples an operation, so the whole run takes well under a minute. The
router holds payments, deliveries (done and dead), a replay plan and a quarantined request,
so that the ids tried find something as well as nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from arrears_router.wire.notifier import sample_payload
from tests.harness import write_config

from .conftest import HMAC_MERCHANT, MD5_MERCHANT, Router

API = "/admin/api/v1"
TOKEN = "fuzz-operate-token-0123456789"
EXCLUDED = [schemathesis.checks.negative_data_rejection]
"""A query parameter the schema does not name is ignored, as HTTP APIs do, not refused; the
cases that do not fit the schema are still sent, and must get no server error and only
answers the schema describes. (Bad values of named parameters get 400: test_admin_api.)"""


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    directory = tmp_path_factory.mktemp("admin-fuzz")
    router = Router(directory)  # its config is replaced here, before it starts
    write_config(router.config_path, merchants=(HMAC_MERCHANT, MD5_MERCHANT),
                 server={"host": "127.0.0.1", "port": 0}, store={"url": "sqlite:///router.db"},
                 admin={"host": "127.0.0.1", "port": 0, "tokens": [
                     {"name": "fuzzer", "scope": "operate", "token": TOKEN}]},
                 plugins={"ledger": {}, "doomed": {
                     "use": "tests.sample_plugins:Recorder", "permanent": True,
                     "path": str(directory / "doomed.log")}})
    try:
        router.start()
        _fill(router, directory)
        yield router
    finally:
        router.close()


def _fill(router: Router, directory: Path) -> None:
    for n in range(3):
        assert router.post(router.hmac.notification(sample_payload(f"42{n:026d}")))[
            "errcode"] == 0
    assert router.post(b'{"appid": "%s", "mch_id": "%s", "sign": "x"}' % (
        HMAC_MERCHANT["appid"].encode(), HMAC_MERCHANT["mch_id"].encode()))["errcode"] != 0
    undecryptable = router.hmac.notification(b"not json at all")
    assert router.post(undecryptable)["errcode"] != 0
    response = httpx.post(f"{router.server.admin_url}{API}/replays", json={"plugin": "doomed"},
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 201, response.text


def test_every_answer_is_one_the_schema_describes(fuzzed: Router) -> None:
    # The schema is loaded here, from the router this test started (schemathesis's lazy
    # pytest loader, `from_fixture`, does not run on this pytest): an operation at a time,
    # cases that fit the schema and cases that do not.
    schema = schemathesis.openapi.from_url(
        f"{fuzzed.server.admin_url}{API}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16, [f"{o.method} {o.path}" for o in operations]
    for operation in operations:
        for mode in GenerationMode:
            _fuzz(operation.as_strategy(mode), fuzzed.server.admin_url)


def _fuzz(cases: st.SearchStrategy[schemathesis.Case], base_url: str) -> None:
    @given(case=cases)
    @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
    def calls(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"},
                               excluded_checks=EXCLUDED, timeout=30)

    calls()
