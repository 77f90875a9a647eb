from __future__ import annotations

import base64
import binascii

import pytest
from cryptography.hazmat.primitives import padding
from hypothesis import given
from hypothesis import strategies as st

from arrears_router.wire.cipher import (
    AesKey,
    DecryptError,
    KeyFormatError,
    _b64decode,
    _unpad,
    parse_aes_key,
)


@pytest.mark.parametrize("size", [16, 24, 32])
@given(plaintext=st.binary(max_size=300))
def test_round_trip_for_aes_128_192_256(size: int, plaintext: bytes) -> None:
    key = AesKey(bytes(range(size)))
    encrypted_data, iv = key.encrypt(plaintext)
    assert key.decrypt(encrypted_data, iv) == plaintext


def test_key_formats_say_their_encoding() -> None:
    raw = bytes(range(32))
    assert parse_aes_key("base64:" + base64.b64encode(raw).decode()) == raw
    assert parse_aes_key("hex:" + raw.hex()) == raw
    assert parse_aes_key("0123456789abcdef") == b"0123456789abcdef"
    # 32 characters that are also valid base64 are still a plain AES-256 key.
    assert parse_aes_key("A" * 32) == b"A" * 32


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("short", "16, 24 or 32 bytes; this one is 5"),
        ("hex:zz", "cannot decode the hex AES key"),
        ("base64:!!!", "cannot decode the base64 AES key"),
        ("hex:" + "00" * 20, "this one is 20 bytes"),
    ],
)
def test_bad_keys_say_what_is_wrong(value: str, problem: str) -> None:
    with pytest.raises(KeyFormatError, match=problem):
        parse_aes_key(value)


@pytest.fixture
def key() -> AesKey:
    return AesKey(bytes(16))


def test_a_wrong_key_never_yields_the_plaintext(key: AesKey) -> None:
    encrypted_data, iv = key.encrypt(b'{"a":1}')
    try:
        plaintext = AesKey(bytes([1] * 16)).decrypt(encrypted_data, iv)
    except DecryptError:
        return
    assert plaintext != b'{"a":1}'


@pytest.mark.parametrize(
    ("encrypted_data", "iv", "problem"),
    [
        ("not base64!", base64.b64encode(bytes(16)).decode(), "encrypted_data is not valid base64"),
        (base64.b64encode(bytes(16)).decode(), "???", "iv is not valid base64"),
        (base64.b64encode(bytes(16)).decode(), base64.b64encode(bytes(8)).decode(),
         "iv is 8 bytes"),
        (base64.b64encode(bytes(20)).decode(), base64.b64encode(bytes(16)).decode(),
         "20 bytes; expected a non-zero multiple of 16"),
        ("", base64.b64encode(bytes(16)).decode(), "0 bytes"),
    ],
)
def test_undecodable_input_says_which_field(
    key: AesKey, encrypted_data: str, iv: str, problem: str
) -> None:
    with pytest.raises(DecryptError, match=problem):
        key.decrypt(encrypted_data, iv)


def test_bad_padding_is_refused(key: AesKey) -> None:
    # A block whose plaintext ends in 0x00 is never valid PKCS#7.
    encrypted_data, iv = key.encrypt(bytes(16))
    truncated = base64.b64encode(base64.b64decode(encrypted_data)[:16]).decode()
    with pytest.raises(DecryptError, match="padding"):
        key.decrypt(truncated, iv)


_IV = base64.b64encode(bytes(16)).decode()
_DATA = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "bad",
    [
        _IV[:-2] + "==AAAA",  # data after the padding
        "=" + _IV[1:],  # padding first
        _IV[:-2],  # padding left off
        _IV[:-2] + "=",  # half the padding
        _IV[:-2] + "===",  # too much padding
        _IV[:8] + "\n" + _IV[8:],  # a line break, which a lenient decoder would skip
        _IV[:8] + " " + _IV[8:],
        _IV.replace("A", "-", 1),  # the URL-safe alphabet
        _IV.replace("A", "_", 1),
        _IV.replace("A", "\u00e9", 1),  # not ASCII
    ],
)
def test_base64_is_read_strictly_and_the_refusal_names_the_field(key: AesKey, bad: str) -> None:
    with pytest.raises(DecryptError, match=r"^iv is not valid base64$"):
        key.decrypt(_DATA, bad)
    with pytest.raises(DecryptError, match=r"^encrypted_data is not valid base64$"):
        key.decrypt(bad, _IV)


_b64_chars = st.sampled_from(
    "AQBz09+/=" "-_ \n\r\t\x00\u00e9\u4e2d"  # the alphabet, padding, and what is not base64
)


@st.composite
def _spoilt_base64(draw: st.DrawFn) -> str:
    """Valid base64 with a few characters, possibly none, put in somewhere."""
    valid = base64.b64encode(draw(st.binary(max_size=24))).decode()
    at = draw(st.integers(0, len(valid)))
    return valid[:at] + draw(st.text(_b64_chars, max_size=3)) + valid[at:]


@given(value=st.text(_b64_chars, max_size=24) | _spoilt_base64())
def test_base64_accepts_exactly_what_b64decode_with_validate_does(value: str) -> None:
    """The fast decoder refuses what ``base64.b64decode(validate=True)`` refused, no more."""
    try:
        expected: bytes | None = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    try:
        got: bytes | None = _b64decode("iv", value)
    except DecryptError:
        got = None
    assert got == expected


@st.composite
def _padded_blocks(draw: st.DrawFn) -> bytes:
    """Whole blocks whose tail is often, but not always, valid PKCS#7."""
    data = bytearray(draw(st.binary(min_size=1, max_size=3)) * 16)[: 16 * draw(st.integers(1, 3))]
    n = draw(st.integers(0, 20))
    for i in range(1, min(n, len(data)) + 1):
        data[-i] = n
    if draw(st.booleans()):
        data[-draw(st.integers(1, len(data)))] = draw(st.integers(0, 255))
    return bytes(data)


@given(padded=_padded_blocks())
def test_unpadding_agrees_with_the_cryptography_unpadder(padded: bytes) -> None:
    unpadder = padding.PKCS7(128).unpadder()
    try:
        expected: bytes | None = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        expected = None
    try:
        got: bytes | None = _unpad(padded)
    except DecryptError:
        got = None
    assert got == expected


@pytest.mark.parametrize(
    "tail",
    [b"\x00", b"\x11", b"\xff", b"\x01\x02", b"\x03\x03\x02\x03", b"\x0f" + bytes([16]) * 15],
)
def test_a_padding_byte_out_of_range_or_a_ragged_tail_is_refused(key: AesKey, tail: bytes) -> None:
    plaintext = bytes(32 - len(tail)) + tail  # two whole blocks: encrypt() pads a third on
    encrypted_data, iv = key.encrypt(plaintext)
    two_blocks = base64.b64encode(base64.b64decode(encrypted_data)[:32]).decode()
    with pytest.raises(DecryptError, match="invalid PKCS#7 padding"):
        key.decrypt(two_blocks, iv)
