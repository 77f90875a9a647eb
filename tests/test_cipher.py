from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.cipher import AesKey, DecryptError, KeyFormatError, parse_aes_key


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
