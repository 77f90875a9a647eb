"""The seed's quirks, at the payload decoder."""

from __future__ import annotations

import re
from datetime import datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arrears_router.payment import CST, Order, parse_time_end
from arrears_router.wire.envelope import Envelope, PayloadError, _decode_any_case, decode_payment
from arrears_router.wire.notifier import sample_payload

ENVELOPE = Envelope(appid="wx1", mch_id="m1", nonce_str="n", encrypted_data="", iv="")


def decode(payload: object) -> object:
    return decode_payment(msgspec.json.encode(payload), ENVELOPE)


def test_the_seeds_own_example_payload_decodes() -> None:
    seed_example = {
        "out_user_id": "xxx", "openid": "1234", "bank_type": "LQT", "total_fee": 123,
        "transaction_id": "12312312", "time_end": "2020030319551111",
        "repay_no": "2020202202020", "order_no": ["123", "456"],
    }
    payment = decode_payment(msgspec.json.encode(seed_example), ENVELOPE)
    assert payment.appid == "wx1"
    assert payment.mch_id == "m1"
    assert payment.total_fee == 123
    assert payment.order_no == ("123", "456")
    assert payment.order == ()  # missing `order` is empty
    assert payment.time_end == "2020030319551111"  # raw kept
    assert payment.paid_at == datetime(2020, 3, 3, 19, 55, 11, tzinfo=CST)  # first 14 digits


def test_field_names_match_case_insensitively() -> None:
    payload = sample_payload("T1")
    payload["repay_No"] = payload.pop("repay_no")
    payload["order_No"] = payload.pop("order_no")
    payload["order"] = [{"order_No": "O1", "out_order_No": "B1", "attach": "x"}]
    payment = decode_payment(msgspec.json.encode(payload), ENVELOPE)
    assert payment.repay_no == "RT1"
    assert payment.order_no == ("OT1-1", "OT1-2")
    assert payment.order[0].order_no == "O1"
    assert payment.order[0].out_order_no == "B1"


def test_a_name_in_two_cases_is_ambiguous() -> None:
    payload = {**sample_payload("T1"), "repay_No": "other"}
    with pytest.raises(PayloadError, match="twice in different case"):
        decode(payload)


def test_null_order_and_out_user_id_are_treated_as_absent() -> None:
    payment = decode({**sample_payload("T1"), "order": None, "out_user_id": None})
    assert payment.order == () and payment.out_user_id == ""  # type: ignore[attr-defined]


def test_unknown_payload_fields_are_ignored() -> None:
    payment = decode({**sample_payload("T1"), "coupon_fee": 5})
    assert payment.total_fee == 300  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"total_fee": "300"}, "Expected `int`, got `str` - at `$.total_fee`"),
        ({"total_fee": -1}, "Expected `int` >= 0 - at `$.total_fee`"),
        ({"order_no": "O1"}, "Expected `array`, got `str` - at `$.order_no`"),
        ({"order": [{"attach": "x"}]}, "missing required field `order_no` - at `$.order[0]`"),
        ({"transaction_id": ""}, "length >= 1 - at `$.transaction_id`"),
    ],
)
def test_invalid_payloads_name_the_field(change: dict[str, object], path: str) -> None:
    with pytest.raises(PayloadError, match=re.escape(path)):
        decode({**sample_payload("T1"), **change})


def test_a_missing_required_field_is_named_and_the_transaction_kept() -> None:
    payload = sample_payload("T9")
    del payload["openid"]
    with pytest.raises(PayloadError, match="missing required field `openid`") as caught:
        decode(payload)
    assert caught.value.transaction_id == "T9"


@pytest.mark.parametrize("plaintext", [b"not json", b"[1,2]", b'"x"', b"\xff\xfe"])
def test_a_payload_that_is_not_a_json_object_is_refused(plaintext: bytes) -> None:
    with pytest.raises(PayloadError, match="payload is"):
        decode_payment(plaintext, ENVELOPE)


@pytest.mark.parametrize(
    ("time_end", "expected"),
    [
        ("20091225091010", datetime(2009, 12, 25, 9, 10, 10, tzinfo=CST)),
        ("2020030319551111", datetime(2020, 3, 3, 19, 55, 11, tzinfo=CST)),
        ("20201399000000", None),
        ("2020", None),
        ("abcdefghijklmn", None),
    ],
)
def test_time_end_reads_the_first_14_digits_as_cst(
    time_end: str, expected: datetime | None
) -> None:
    assert parse_time_end(time_end) == expected


def test_an_unreadable_time_end_is_kept_not_refused() -> None:
    payment = decode({**sample_payload("T1"), "time_end": "soon"})
    assert payment.time_end == "soon" and payment.paid_at is None  # type: ignore[attr-defined]


_text = st.text(max_size=12)
_order = st.fixed_dictionaries(
    {"order_no": _text},
    optional={"attach": _text, "base64_qrcode": _text, "out_order_no": _text},
)


@given(
    payload=st.fixed_dictionaries(
        {"openid": _text, "bank_type": _text, "total_fee": st.integers(0, 10**9),
         "transaction_id": st.text(min_size=1, max_size=12),
         "time_end": st.from_regex(r"\A[0-9]{14,16}\Z") | _text, "repay_no": _text,
         "order_no": st.lists(_text, max_size=3)},
        optional={"order": st.lists(_order, max_size=3), "out_user_id": _text},
    )
)
def test_the_fast_path_reads_exactly_what_the_general_one_does(payload: dict[str, object]) -> None:
    plaintext = msgspec.json.encode(payload)
    assert decode_payment(plaintext, ENVELOPE) == _decode_any_case(plaintext, ENVELOPE)


def test_the_fast_path_copies_every_order_field() -> None:
    """The fast path rebuilds each Order field by field: a field added later must be copied."""
    order = {field.encode_name: f"v-{field.name}" for field in msgspec.structs.fields(Order)}
    plaintext = msgspec.json.encode({**sample_payload("T1"), "order": [order]})
    payment = decode_payment(plaintext, ENVELOPE)
    assert payment == _decode_any_case(plaintext, ENVELOPE)
    assert type(payment.order[0]) is Order
    assert msgspec.structs.asdict(payment.order[0]) == order


def _parse_time_end_by_slices(time_end: str) -> datetime | None:
    """The reference reading of ``time_end``, slice by slice."""
    digits = time_end[:14]
    if len(digits) != 14 or not (digits.isascii() and digits.isdigit()):
        return None
    try:
        return datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]),
                        int(digits[10:12]), int(digits[12:14]), tzinfo=CST)
    except ValueError:
        return None


def _two_digits(mostly_up_to: int) -> st.SearchStrategy[str]:
    return (st.integers(0, mostly_up_to) | st.integers(0, 99)).map("{:02d}".format)


@given(
    time_end=st.builds(
        "".join,
        st.tuples(st.integers(0, 9999).map("{:04d}".format), _two_digits(12), _two_digits(31),
                  _two_digits(24), _two_digits(60), _two_digits(60),
                  st.text("0123456789x ", max_size=3)),
    )
    | st.text("0123456789\u0661 +_-", max_size=16)
)
def test_time_end_reads_as_the_slices_say(time_end: str) -> None:
    assert parse_time_end(time_end) == _parse_time_end_by_slices(time_end)
    if (parsed := parse_time_end(time_end)) is not None:
        assert parsed.tzinfo is CST
