"""AES-CBC with PKCS#7 padding, as the notification's ``encrypted_data`` uses (docs/protocol.md)."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["AesKey", "DecryptError", "KeyFormatError", "parse_aes_key"]

_KEY_SIZES = (16, 24, 32)
_BLOCK = 16


class DecryptError(Exception):
    """The ciphertext or IV cannot be decoded, or the plaintext is not properly padded."""


class KeyFormatError(ValueError):
    """An AES key value in the config cannot be read."""


def parse_aes_key(value: str) -> bytes:
    """Read a configured AES key: ``base64:...``, ``hex:...``, or plain text (its UTF-8 bytes).

    The prefix says the encoding, so nothing is guessed: a 32-character string could be
    base64 or a plain AES-256 key.
    """
    scheme, _, encoded = value.partition(":")
    try:
        if scheme == "base64" and encoded:
            key = base64.b64decode(encoded, validate=True)
        elif scheme == "hex" and encoded:
            key = bytes.fromhex(encoded)
        else:
            key = value.encode()
    except (binascii.Error, ValueError) as exc:
        raise KeyFormatError(f"cannot decode the {scheme} AES key: {exc}") from None
    if len(key) not in _KEY_SIZES:
        raise KeyFormatError(f"an AES key is 16, 24 or 32 bytes; this one is {len(key)} bytes"
                             + (_hint(value) if scheme not in ("base64", "hex") else ""))
    return key


def _hint(value: str) -> str:
    """What a plain-text key of the wrong length most likely is."""
    for prefix, decode in (("hex", bytes.fromhex), ("base64", _strict_b64)):
        try:
            if len(decode(value)) in _KEY_SIZES:
                return f"; it reads as {prefix}: write it as \"{prefix}:...\""
        except (binascii.Error, ValueError):
            pass
    return ""


def _strict_b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _b64decode(field: str, value: str) -> bytes:
    # strict_mode refuses what ``base64.b64decode(value, validate=True)`` refuses (a character
    # outside the standard alphabet, padding that is missing, misplaced or followed by data, a
    # non-ASCII str) without its per-call regex; tests/test_cipher.py checks them side by side.
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError):
        raise DecryptError(f"{field} is not valid base64") from None


# The PKCS#7 tails: _PADDING[n] is n bytes of value n.
_PADDING = tuple(bytes((n,)) * n for n in range(_BLOCK + 1))


def _unpad(padded: bytes) -> bytes:
    """Strict PKCS#7: the last byte n is 1..16 and the last n bytes all equal n.

    A direct check, cheaper than cryptography's unpadder object, and not constant-time. That
    is safe here: the intake verifies the sign before it decrypts anything, so a ciphertext
    an attacker made up is refused before it reaches this check (there is no padding oracle).
    """
    n = padded[-1]
    if n > _BLOCK or not n or not padded.endswith(_PADDING[n]):
        raise DecryptError("encrypted_data has invalid PKCS#7 padding")
    return padded[:-n]


class AesKey:
    """One merchant's AES key, with the algorithm object built once."""

    __slots__ = ("_algorithm",)

    def __init__(self, key: bytes) -> None:
        self._algorithm = algorithms.AES(key)

    def decrypt(self, encrypted_data: str, iv: str) -> bytes:
        """Plaintext of base64 ``encrypted_data`` under base64 ``iv``, strictly unpadded."""
        iv_bytes = _b64decode("iv", iv)
        if len(iv_bytes) != _BLOCK:
            raise DecryptError(f"iv is {len(iv_bytes)} bytes after base64; expected 16")
        data = _b64decode("encrypted_data", encrypted_data)
        if not data or len(data) % _BLOCK:
            raise DecryptError(
                f"encrypted_data is {len(data)} bytes; expected a non-zero multiple of 16"
            )
        decryptor = Cipher(self._algorithm, modes.CBC(iv_bytes)).decryptor()
        return _unpad(decryptor.update(data) + decryptor.finalize())

    def encrypt(self, plaintext: bytes, iv: bytes | None = None) -> tuple[str, str]:
        """``(encrypted_data, iv)`` in base64, as WeChat sends them; a random IV by default."""
        iv = os.urandom(_BLOCK) if iv is None else iv
        padder = padding.PKCS7(_BLOCK * 8).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        data = encryptor.update(padded) + encryptor.finalize()
        return base64.b64encode(data).decode(), base64.b64encode(iv).decode()
