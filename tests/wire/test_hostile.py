"""Hostile bodies: bounded work before the sign is checked, and no decoder error escapes."""

from __future__ import annotations

import msgspec
import pytest

from arrears_router.config import KeySet, MerchantConfig
from arrears_router.errcodes import ErrCode
from arrears_router.store import Store
from arrears_router.wire.cipher import AesKey, DecryptError, parse_aes_key
from arrears_router.wire.intake import Intake
from arrears_router.wire.merchants import MerchantBook
from arrears_router.wire.notifier import Notifier, sample_payload
from arrears_router.wire.signature import MAX_SIGNED_FIELDS, Signer

pytestmark = pytest.mark.anyio

DEEP = 100_000


def flood(merchant: MerchantConfig, fields: int, sign: str) -> bytes:
    """A real merchant's identity, many small fields, and a sign."""
    head = (f'{{"appid":"{merchant.appid}","mch_id":"{merchant.mch_id}","nonce_str":"n",'
            f'"encrypted_data":"x","iv":"y","sign":"{sign}"')
    return (head + "".join(f',"k{n}":{n}' for n in range(fields)) + "}").encode()


async def test_a_field_flood_is_refused_before_it_is_hashed(
    intake: Intake, merchant: MerchantConfig, store: Store
) -> None:
    reply = await intake.receive(flood(merchant, 70_000, "A" * 64))
    assert reply.errcode == ErrCode.INVALID_REQUEST
    assert f"at most {MAX_SIGNED_FIELDS} besides sign" in reply.errmsg
    assert await store.quarantined() == []


async def test_a_sign_of_no_known_length_is_refused_before_the_fields_are_read(
    intake: Intake, merchant: MerchantConfig
) -> None:
    reply = await intake.receive(flood(merchant, 70_000, "short"))
    assert reply.errcode == ErrCode.INVALID_SIGNATURE
    assert "expected 32 (MD5) or 64 (HMAC-SHA256)" in reply.errmsg


def signed_with_extra(merchant: MerchantConfig, notifier: Notifier, count: int) -> bytes:
    """A notification signed as WeChat would, with ``count`` extra string fields."""
    fields = notifier.envelope(msgspec.json.encode(sample_payload("T1")),
                               **{f"k{n}": "v" for n in range(count)})
    sign = Signer(merchant.sign_key).sign(fields, notifier.sign_type)
    return msgspec.json.encode({**fields, "sign": sign})


async def test_even_a_signed_request_may_not_carry_too_many_fields(
    intake: Intake, merchant: MerchantConfig, notifier: Notifier
) -> None:
    envelope_fields = 5  # appid, mch_id, nonce_str, encrypted_data, iv
    over = signed_with_extra(merchant, notifier, MAX_SIGNED_FIELDS - envelope_fields + 1)
    reply = await intake.receive(over)
    assert reply.errcode == ErrCode.INVALID_REQUEST
    at_limit = signed_with_extra(merchant, notifier, MAX_SIGNED_FIELDS - envelope_fields)
    assert (await intake.receive(at_limit)).errcode == ErrCode.OK


@pytest.mark.parametrize("body", [
    b"[" * DEEP + b"]" * DEEP,
    b'{"appid":' + b"[" * DEEP + b"]" * DEEP + b"}",
    b'{"appid":"wxtest0000000001","unknown":' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}",
], ids=["array", "in-a-known-field", "in-an-unknown-field"])
async def test_deeply_nested_json_is_an_invalid_request(intake: Intake, body: bytes) -> None:
    reply = await intake.receive(body)
    assert reply.errcode == ErrCode.INVALID_REQUEST
    assert reply.errmsg.startswith("invalid request body")


async def test_deeply_nested_signed_json_is_refused_not_crashed(
    intake: Intake, merchant: MerchantConfig, notifier: Notifier
) -> None:
    fields = notifier.envelope(msgspec.json.encode(sample_payload("T1")))
    raw = msgspec.json.encode(fields)[:-1] + b',"extra":' + b"[" * DEEP + b"]" * DEEP + b"}"
    reply = await intake.receive(raw)
    assert reply.errcode == ErrCode.INVALID_REQUEST
    assert "nested too deeply" in reply.errmsg


async def test_a_deeply_nested_payload_is_quarantined(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    reply = await intake.receive(notifier.notification(b"[" * DEEP + b"]" * DEEP))
    assert reply.errcode == ErrCode.INVALID_PAYLOAD
    assert "nested too deeply" in reply.errmsg
    [entry] = await store.quarantined()
    assert entry.errcode == ErrCode.INVALID_PAYLOAD


# -- key rotation

RIGHT_AES = "hex:" + "11" * 32
WRONG_AES = "hex:" + "22" * 32


def unpads_under(key: str, encrypted_data: str, iv: str) -> bool:
    try:
        AesKey(parse_aes_key(key)).decrypt(encrypted_data, iv)
    except DecryptError:
        return False
    return True


async def test_rotation_keeps_the_key_whose_payload_decodes_not_the_first_that_unpads(
    merchant: MerchantConfig, store: Store
) -> None:
    """Two key sets share a sign key and the current AES key is not the one WeChat used:
    that wrong key still unpads about once in 256, and must not decide."""
    sender = Notifier(msgspec.structs.replace(merchant, aes_key=RIGHT_AES))
    plaintext = msgspec.json.encode(sample_payload("T-ROT"))
    for _ in range(20_000):  # about 256 tries find an IV under which the wrong key unpads
        fields = sender.envelope(plaintext)
        if unpads_under(WRONG_AES, fields["encrypted_data"], fields["iv"]):
            break
    else:
        pytest.fail("no IV under which the wrong key unpads")
    rotating = msgspec.structs.replace(
        merchant, aes_key=WRONG_AES,
        previous_keys=(KeySet(sign_key=merchant.sign_key, aes_key=RIGHT_AES),),
    )
    intake = Intake(MerchantBook.from_config([rotating]), store)
    reply = await intake.receive(msgspec.json.encode(sender.signed(fields)))
    assert reply.errcode == ErrCode.OK, reply.errmsg
    [event] = await store.events()
    assert event.payment.transaction_id == "T-ROT"
