"""A quarantined request is one row however it is re-sent: the same signed fields with other
spacing, padding, field order, or the sign in another case or algorithm, count hits."""

from __future__ import annotations

import json
import random

import msgspec
import pytest

from arrears_router.config import MerchantConfig
from arrears_router.errcodes import ErrCode
from arrears_router.store import Store
from arrears_router.wire.intake import Intake
from arrears_router.wire.notifier import Notifier, sample_payload
from arrears_router.wire.signature import SignType

pytestmark = pytest.mark.anyio


def respaced(fields: dict[str, str], seed: int) -> bytes:
    """The same fields as another sender (or an attacker) might lay them out."""
    chance = random.Random(seed)
    names = list(fields)
    chance.shuffle(names)
    pad = " " * chance.randrange(0, 4000)
    text = json.dumps({name: fields[name] for name in names},
                      indent=chance.choice([None, 1, 4]),
                      separators=chance.choice([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
    return (pad + text + pad + "\n" * chance.randrange(3)).encode()


async def test_200_copies_of_a_request_padded_otherwise_are_one_row_with_200_hits(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    fields = notifier.signed(notifier.envelope(msgspec.json.encode(
        sample_payload("TX-PAD", total_fee=-1))))
    copies = [respaced(fields, seed) for seed in range(199)]
    copies.append(respaced({**fields, "sign": fields["sign"].lower()}, 199))
    assert len(set(copies)) == 200

    replies = [await intake.receive(body) for body in copies]

    assert {(r.errcode, r.nonce_str) for r in replies} == {
        (ErrCode.INVALID_PAYLOAD, fields["nonce_str"])}
    [kept] = await store.quarantined()
    assert (kept.hits, kept.body, kept.transaction_id) == (200, copies[0], "TX-PAD")
    assert (await store.quarantine_stats()).bytes == len(copies[0])


async def test_the_same_fields_signed_with_md5_and_with_hmac_are_one_request(
    intake: Intake, merchant: MerchantConfig, store: Store
) -> None:
    hmac = Notifier(merchant, SignType.HMAC_SHA256)
    fields = hmac.envelope(b"\xff not json")
    md5_signed = {**fields, "sign": Notifier(merchant, SignType.MD5).sign(fields)}
    for body in (hmac.signed(fields), md5_signed):
        reply = await intake.receive(msgspec.json.encode(body))
        assert reply.errcode == ErrCode.INVALID_PAYLOAD
    [kept] = await store.quarantined()
    assert kept.hits == 2


async def test_a_request_signed_anew_is_another_row(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    """WeChat's own retry with a new nonce is a new request: kept, within the bounds."""
    for _ in range(2):
        await intake.receive(notifier.notification(sample_payload("TX-AGAIN", total_fee=-1)))
    assert sorted(r.hits for r in await store.quarantined()) == [1, 1]
