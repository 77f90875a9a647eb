"""A captured authentic request re-sent padded, to the real ``serve``: one quarantine row."""

from __future__ import annotations

import sqlite3
from contextlib import closing

from arrears_router.wire.notifier import sample_payload

from .conftest import Router


def test_a_refused_request_re_sent_with_padding_is_one_row_not_a_copy_each(
    router: Router,
) -> None:
    body = router.hmac.notification(sample_payload("TX-PADDED", total_fee=-1))
    room = router.max_body_bytes - len(body) - 2  # each copy as large as the limit lets in
    copies = [b" " * (n % room) + body + b"\n" * (room - n % room) for n in range(200)]

    replies = [router.post(copy) for copy in copies]

    assert {reply["errcode"] for reply in replies} == {40005}
    [kept] = router.quarantined()
    assert (kept["hits"], kept["transaction_id"]) == (200, "TX-PADDED")
    with closing(sqlite3.connect(router.store_path)) as db:
        (bodies,) = db.execute("SELECT total(length(body)) FROM quarantine").fetchone()
    assert bodies == len(copies[0])
