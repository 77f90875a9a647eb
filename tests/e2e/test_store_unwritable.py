"""The real ``serve`` on a store that cannot keep a write: its disk full, or its file deleted.
Every notification is then answered 50001 (WeChat sends it again), ``/readyz`` says 503 and
why, and nothing acknowledged is missing after a restart."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import httpx

from arrears_router.wire.notifier import sample_payload
from tests.full_disk import fill, small_tmpfs
from tests.harness import wait_until

from .conftest import Router, running_router


def send_all(router: Router, transaction_ids: Iterable[str]) -> list[int]:
    """The errcodes of one notification of each, as WeChat sends them."""
    return [router.post(router.hmac.notification(sample_payload(tx)))["errcode"]
            for tx in transaction_ids]


def readiness(router: Router) -> httpx.Response:
    return router.http.get(router.base_url + "/readyz")


def stored(router: Router) -> set[str]:
    return {event["payment"]["transaction_id"] for event in router.events()}


def test_a_full_disk_is_refused_and_not_ready_until_space_is_freed(tmp_path: Path) -> None:
    router = Router(tmp_path / "router")
    with small_tmpfs(router.store_path.parent) as disk:  # the store's folder alone: logs go on
        try:
            router.start()
            before = [f"TX-BEFORE-{n}" for n in range(5)]
            assert send_all(router, before) == [0] * 5

            filler = fill(disk)
            during = [f"TX-FULL-{n}" for n in range(5)]
            assert send_all(router, during) == [50001] * 5
            not_ready = readiness(router)
            assert not_ready.status_code == 503
            assert "disk is full" in not_ready.json()["errmsg"]

            filler.unlink()
            wait_until(lambda: readiness(router).status_code == 200,
                       "/readyz to say ready once space is freed")
            assert send_all(router, during) == [0] * 5  # WeChat's retries

            router.kill9()  # nothing shuts down cleanly: what was acknowledged was synced
            router.start()
            assert stored(router) == {*before, *during}
        finally:
            router.close()


def test_a_store_file_deleted_while_serving_acknowledges_nothing_until_a_restart(
    tmp_path: Path,
) -> None:
    with running_router(tmp_path / "router") as router:
        assert send_all(router, ["TX-IN-THE-DELETED-FILE"]) == [0]
        router.store_path.unlink()

        after = [f"TX-AFTER-{n}" for n in range(20)]
        assert send_all(router, after) == [50001] * 20
        not_ready = readiness(router)
        assert not_ready.status_code == 503
        assert "deleted or replaced" in not_ready.json()["errmsg"]
        assert "restart" in not_ready.json()["errmsg"]
        assert router.server.logged("was deleted or replaced while the router had it open")

        router.restart()  # opens what is at the path now: a new, empty store
        assert readiness(router).status_code == 200
        assert send_all(router, after) == [0] * 20  # WeChat's retries
        # What came after the deletion is all there; what was before went with the file.
        assert stored(router) == set(after)
