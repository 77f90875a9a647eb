"""Every errcode the README lists (docs/protocol.md: the order of checks), from the intake
pipeline onto a real store."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arrears_router.config import KeySet, MerchantConfig
from arrears_router.errcodes import ErrCode
from arrears_router.store import Store, StoreError
from arrears_router.wire.envelope import Reply
from arrears_router.wire.intake import Intake
from arrears_router.wire.merchants import MerchantBook
from arrears_router.wire.notifier import Notifier, sample_payload
from arrears_router.wire.signature import SignType

pytestmark = pytest.mark.anyio

ERRCODES = {int(code) for code in ErrCode}


async def test_a_valid_notification_is_stored_and_its_nonce_echoed(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    fields = notifier.signed(notifier.envelope(msgspec.json.encode(sample_payload("T1"))))
    reply = await intake.receive(msgspec.json.encode(fields))
    assert reply == Reply(ErrCode.OK, "ok", fields["nonce_str"])
    [event] = await store.events()
    assert event.payment.transaction_id == "T1"
    assert event.payment.total_fee == 300


async def test_a_duplicate_answers_ok_and_stores_nothing_new(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    payload = sample_payload("T1")
    first = await intake.receive(notifier.notification(payload))
    again = await intake.receive(notifier.notification(payload))  # new nonce and IV
    assert (first.errcode, again.errcode) == (ErrCode.OK, ErrCode.OK)
    assert again.errmsg == "ok: already stored"
    assert len(await store.events()) == 1
    assert await store.quarantined() == []


async def test_same_transaction_with_other_content_is_quarantined(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    await intake.receive(notifier.notification(sample_payload("T1")))
    reply = await intake.receive(notifier.notification(sample_payload("T1", total_fee=1)))
    assert reply.errcode == ErrCode.CONFLICTING_DUPLICATE
    assert "T1" in reply.errmsg
    [entry] = await store.quarantined()
    assert (entry.errcode, entry.transaction_id) == (40009, "T1")
    [event] = await store.events()
    assert event.payment.total_fee == 300  # the stored payment is untouched


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "Input data was truncated"),
        (b"not json", "JSON is malformed"),
        (b"[1]", "Expected `object`, got `array`"),
        (b'{"appid":"a"}', "missing required field `mch_id`"),
        (b'{"appid":1,"mch_id":"m","nonce_str":"n","encrypted_data":"e","iv":"i"}',
         "Expected `str`, got `int` - at `$.appid`"),
    ],
)
async def test_a_malformed_body_is_40001_naming_the_problem(
    intake: Intake, body: bytes, problem: str
) -> None:
    reply = await intake.receive(body)
    assert reply.errcode == ErrCode.INVALID_REQUEST
    assert problem in reply.errmsg


async def test_the_nonce_is_echoed_when_it_can_be_read(intake: Intake) -> None:
    reply = await intake.receive(b'{"nonce_str":"abc","appid":"a"}')
    assert (reply.errcode, reply.nonce_str) == (ErrCode.INVALID_REQUEST, "abc")


async def test_an_unknown_merchant_is_40002(intake: Intake, merchant: MerchantConfig) -> None:
    stranger = msgspec.structs.replace(merchant, mch_id="999")
    reply = await intake.receive(Notifier(stranger).notification(sample_payload("T1")))
    assert reply.errcode == ErrCode.UNKNOWN_MERCHANT
    assert "'999'" in reply.errmsg


async def test_the_seed_example_without_sign_is_40003(intake: Intake, notifier: Notifier) -> None:
    fields = notifier.envelope(msgspec.json.encode(sample_payload("T1")))  # never signed
    reply = await intake.receive(msgspec.json.encode(fields))
    assert (reply.errcode, reply.errmsg) == (40003, "invalid signature: sign is missing")


async def test_a_sign_made_with_another_key_is_40003(
    intake: Intake, merchant: MerchantConfig, store: Store
) -> None:
    forger = Notifier(msgspec.structs.replace(merchant, sign_key="guessed"))
    reply = await intake.receive(forger.notification(sample_payload("T1")))
    assert reply.errcode == ErrCode.INVALID_SIGNATURE
    assert await store.events() == [] and await store.quarantined() == []


async def test_md5_is_refused_for_a_merchant_accepting_only_hmac(
    merchant: MerchantConfig, store: Store
) -> None:
    hmac_only = msgspec.structs.replace(merchant, sign_types=(SignType.HMAC_SHA256,))
    intake = Intake(MerchantBook.from_config([hmac_only]), store)
    reply = await intake.receive(Notifier(merchant, SignType.MD5).notification(sample_payload("T")))
    assert reply.errcode == ErrCode.INVALID_SIGNATURE
    assert "MD5 is not accepted" in reply.errmsg


@pytest.mark.parametrize("sign_type", list(SignType))
async def test_both_sign_types_are_accepted_when_configured(
    intake: Intake, merchant: MerchantConfig, sign_type: SignType
) -> None:
    reply = await intake.receive(Notifier(merchant, sign_type).notification(sample_payload("T")))
    assert reply.errcode == ErrCode.OK


async def test_undecryptable_but_signed_is_40004_and_quarantined(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    fields = notifier.envelope(b"{}", iv="AAAA")  # a 3-byte IV, signed
    body = msgspec.json.encode(notifier.signed(fields))
    reply = await intake.receive(body)
    assert reply.errcode == ErrCode.UNDECRYPTABLE
    assert "iv is 3 bytes" in reply.errmsg
    [entry] = await store.quarantined()
    assert (entry.errcode, entry.body) == (40004, body)


async def test_decrypted_but_invalid_is_40005_naming_the_path_and_quarantined(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    body = notifier.notification(sample_payload("T7", total_fee="3.00"))
    reply = await intake.receive(body)
    assert reply.errcode == ErrCode.INVALID_PAYLOAD
    assert "$.total_fee" in reply.errmsg
    [entry] = await store.quarantined()
    assert (entry.errcode, entry.transaction_id, entry.body) == (40005, "T7", body)


async def test_a_refused_body_arriving_again_counts_a_hit(
    intake: Intake, notifier: Notifier, store: Store
) -> None:
    body = notifier.notification(b"not json")
    for _ in range(3):
        await intake.receive(body)
    [entry] = await store.quarantined()
    assert entry.hits == 3


async def test_previous_keys_are_accepted_during_a_rotation(
    merchant: MerchantConfig, store: Store
) -> None:
    rotated = msgspec.structs.replace(
        merchant, sign_key="new-sign-key", aes_key="new-aes-key-0016",
        previous_keys=(KeySet(sign_key=merchant.sign_key, aes_key=merchant.aes_key),),
    )
    intake = Intake(MerchantBook.from_config([rotated]), store)
    old = await intake.receive(Notifier(merchant).notification(sample_payload("OLD")))
    new = await intake.receive(Notifier(rotated).notification(sample_payload("NEW")))
    assert (old.errcode, new.errcode) == (ErrCode.OK, ErrCode.OK)


async def test_a_rotation_of_the_aes_key_alone_tries_both(
    merchant: MerchantConfig, store: Store
) -> None:
    rotated = msgspec.structs.replace(
        merchant, aes_key="new-aes-key-0016",
        previous_keys=(KeySet(sign_key=merchant.sign_key, aes_key=merchant.aes_key),),
    )
    intake = Intake(MerchantBook.from_config([rotated]), store)
    reply = await intake.receive(Notifier(merchant).notification(sample_payload("OLD")))
    assert reply.errcode == ErrCode.OK


class FailingStore:
    """A store whose commits fail, as a full disk or a lost database would."""

    async def accept(self, event: object) -> None:
        raise StoreError("disk I/O error")

    quarantine = accept


async def test_a_store_failure_is_50001_so_wechat_retries(
    merchant: MerchantConfig, notifier: Notifier
) -> None:
    intake = Intake(MerchantBook.from_config([merchant]), FailingStore())  # type: ignore[arg-type]
    reply = await intake.receive(notifier.notification(sample_payload("T1")))
    assert reply.errcode == ErrCode.STORE_UNAVAILABLE
    reply = await intake.receive(notifier.notification(b"not json"))
    assert reply.errcode == ErrCode.STORE_UNAVAILABLE


# -- properties

# The store is shared across examples on purpose: each example's request is new.
FIXTURE_REUSE = HealthCheck.function_scoped_fixture
SIGNED = ["appid", "mch_id", "nonce_str", "encrypted_data", "iv"]


@settings(max_examples=200, deadline=None, suppress_health_check=[FIXTURE_REUSE])
@given(
    field=st.sampled_from([*SIGNED, "sign", "an_added_field"]),
    replacement=st.text(min_size=1, max_size=40),
)
async def test_any_change_to_a_signed_field_or_the_sign_is_40003(
    merchant: MerchantConfig, store: Store, field: str, replacement: str
) -> None:
    notifier = Notifier(merchant)
    fields = notifier.signed(notifier.envelope(msgspec.json.encode(sample_payload("T1"))))
    if str(fields.get(field, "")).upper() == replacement.upper():
        return  # not a change (a sign is read in either case)
    tampered = {**fields, field: replacement}
    # Whatever merchant the tampered request names holds the same keys, so only the
    # signature can tell: a changed appid or mch_id must not slip past as another merchant.
    named = msgspec.structs.replace(merchant, appid=tampered["appid"], mch_id=tampered["mch_id"])
    intake = Intake(MerchantBook.from_config({merchant, named}), store)
    reply = await intake.receive(msgspec.json.encode(tampered))
    assert reply.errcode == ErrCode.INVALID_SIGNATURE, reply


@settings(max_examples=300, deadline=None, suppress_health_check=[FIXTURE_REUSE])
@given(body=st.binary(max_size=512))
async def test_arbitrary_bytes_always_get_a_json_errcode_reply(intake: Intake, body: bytes) -> None:
    reply = await intake.receive(body)
    assert reply.errcode in ERRCODES and reply.errcode != 0
    assert reply.errmsg
