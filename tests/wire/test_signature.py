from __future__ import annotations

import hashlib
import hmac
import re

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arrears_router.wire.signature import (
    SignatureError,
    Signer,
    SignType,
    _signed_fields_as_sent,
    check_sign,
    signed_fields,
)

WECHAT_EXAMPLE = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
WECHAT_KEY = "192006250b4c09247ec02edce69f6a2d"


def test_wechat_pay_public_md5_example() -> None:
    sign = Signer(WECHAT_KEY).sign(WECHAT_EXAMPLE, SignType.MD5)
    assert sign == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_hmac_sha256_is_keyed_with_the_sign_key_over_the_same_string() -> None:
    message = (
        "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100"
        f"&nonce_str=ibuaiVcKdpRxkhJA&key={WECHAT_KEY}"
    )
    expected = hmac.new(WECHAT_KEY.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert Signer(WECHAT_KEY).sign(WECHAT_EXAMPLE, SignType.HMAC_SHA256) == expected.upper()


@pytest.mark.parametrize("sign_type", list(SignType))
def test_either_case_of_the_sign_verifies(sign_type: SignType) -> None:
    signer = Signer(WECHAT_KEY)
    sign = signer.sign(WECHAT_EXAMPLE, sign_type)
    assert signer.verify(WECHAT_EXAMPLE, sign.lower(), sign_type)
    assert signer.verify(WECHAT_EXAMPLE, sign, sign_type)


def test_signed_fields_keep_zero_drop_empty_and_null_and_exclude_sign() -> None:
    body = msgspec.json.encode(
        {"appid": "a", "count": 0, "flag": False, "empty": "", "none": None, "sign": "X",
         "nested": {"b": 1}}
    )
    assert signed_fields(body) == {
        "appid": "a", "count": "0", "flag": "false", "nested": '{"b":1}'
    }


def test_unknown_fields_are_signed_too() -> None:
    signer = Signer(WECHAT_KEY)
    fields = {**WECHAT_EXAMPLE, "new_field_from_wechat": "x"}
    assert signer.sign(fields, SignType.MD5) != signer.sign(WECHAT_EXAMPLE, SignType.MD5)


def test_values_are_signed_as_sent_not_url_encoded() -> None:
    body = msgspec.json.encode({"a": "x y&z=1", "b": "中文"})
    fields = signed_fields(body)
    assert fields == {"a": "x y&z=1", "b": "中文"}


def test_names_sort_in_ascii_byte_order_case_sensitively() -> None:
    key = "k"
    sign = Signer(key).sign({"b": "1", "B": "2", "a": "3"}, SignType.MD5)
    expected = hashlib.md5(b"B=2&a=3&b=1&key=k").hexdigest().upper()
    assert sign == expected


def test_a_missing_sign_is_refused() -> None:
    with pytest.raises(SignatureError, match="missing"):
        check_sign("", {SignType.HMAC_SHA256})


def test_a_sign_of_another_length_is_refused() -> None:
    with pytest.raises(SignatureError, match=r"32 .*64"):
        check_sign("ABC", {SignType.HMAC_SHA256, SignType.MD5})


def test_md5_is_refused_when_the_merchant_accepts_only_hmac() -> None:
    with pytest.raises(SignatureError, match="MD5 is not accepted"):
        check_sign("A" * 32, {SignType.HMAC_SHA256})


def test_a_sign_type_field_cannot_pick_the_algorithm() -> None:
    """No downgrade: the algorithm comes from the merchant's config and the sign's length."""
    fields = {**WECHAT_EXAMPLE, "sign_type": "MD5"}
    md5_sign = Signer(WECHAT_KEY).sign(fields, SignType.MD5)
    with pytest.raises(SignatureError, match="MD5 is not accepted"):
        check_sign(md5_sign, {SignType.HMAC_SHA256})


def test_verify_rejects_a_wrong_key_and_non_ascii_sign() -> None:
    sign = Signer(WECHAT_KEY).sign(WECHAT_EXAMPLE, SignType.HMAC_SHA256)
    assert not Signer("other").verify(WECHAT_EXAMPLE, sign, SignType.HMAC_SHA256)
    assert not Signer(WECHAT_KEY).verify(WECHAT_EXAMPLE, "é" * 64, SignType.HMAC_SHA256)


_json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
_names = st.sampled_from(["appid", "sign", "nonce_str", "Sign", "", "x"]) | st.text(max_size=6)


@given(
    fields=st.dictionaries(_names, st.text(max_size=8) | st.none(), max_size=6)
    | st.dictionaries(_names, _json, max_size=6),
    spaced=st.booleans(),
)
def test_signed_fields_agree_with_reading_every_value_as_sent(
    fields: dict[str, object], spaced: bool
) -> None:
    """The all-strings fast path and the raw-text reading give the same fields."""
    body = msgspec.json.encode(fields)
    if spaced:  # as sent: other JSON keeps its own spelling, spaces included
        body = msgspec.json.format(body, indent=1)
    assert signed_fields(body) == _signed_fields_as_sent(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": "1", "a": "2", "sign": "S"}',  # a repeated name: the last value, as JSON readers do
        b'{"a": "x", "b": 1e400}',  # a number too large to read, signed as its text
        b'{"a": "\\u00e9", "b": [1, {"c" : null}], "sign": 5}',
    ],
)
def test_signed_fields_edge_bodies(body: bytes) -> None:
    assert signed_fields(body) == _signed_fields_as_sent(body)


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"{", b'{"a": "\\ud800"}', b""])
def test_a_body_that_is_not_a_json_object_raises_as_before(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError) as expected:
        _signed_fields_as_sent(body)
    with pytest.raises(msgspec.DecodeError, match=re.escape(str(expected.value))):
        signed_fields(body)
