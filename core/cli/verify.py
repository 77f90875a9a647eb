"""``verify``: explain a captured notification offline, step by step, as the router reads it.

For a merchant debugging its WeChat set-up: which merchant it is, the exact string that was
signed (the key masked), the sign each accepted algorithm expects against the one received,
what decryption gave, and the payment or the field that is wrong. Nothing is sent or stored.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from arrears_router.cli.common import Commands, load, print_json
from arrears_router.errcodes import ErrCode
from arrears_router.http import mask_openid
from arrears_router.wire.cipher import DecryptError
from arrears_router.wire.envelope import PayloadError, decode_envelope, decode_payment
from arrears_router.wire.merchants import Merchant, MerchantBook
from arrears_router.wire.reading import Refused, read_notification
from arrears_router.wire.signature import signed_fields, signing_string

__all__ = ["add_commands", "explain"]

MASKED_KEY = "********"


def add_commands(commands: Commands) -> None:
    verify = commands.add("verify", "explain a captured notification offline, step by step",
                          cmd_verify, json=True)
    verify.add_argument("file", metavar="FILE",
                        help="the request body as captured, or a whole HTTP request; - for stdin")


class Explanation(msgspec.Struct, kw_only=True):
    errcode: int
    errmsg: str
    steps: list[str]
    """What each step found, in the router's order."""
    payment: dict[str, Any] | None = None


def cmd_verify(args: argparse.Namespace) -> None:
    raw = sys.stdin.buffer.read() if args.file == "-" else _read(args.file)
    explanation = explain(_body_of(raw), MerchantBook.from_config(load(args).merchants))
    if args.json:
        print_json(explanation)
    else:
        for step in explanation.steps:
            print(step)
        verdict = "would be accepted" if explanation.errcode == ErrCode.OK else "refused"
        print(f"verdict: errcode {explanation.errcode}, {verdict}: {explanation.errmsg}")
    if explanation.errcode != ErrCode.OK:
        raise SystemExit(1)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise SystemExit(f"verify: cannot read {path}: {exc.strerror}") from None


def _body_of(raw: bytes) -> bytes:
    """A whole HTTP request's body (after its headers), or ``raw`` as it is."""
    if raw.startswith(b"POST ") and (cut := raw.find(b"\r\n\r\n")) >= 0:
        return raw[cut + 4:]
    if raw.startswith(b"POST ") and (cut := raw.find(b"\n\n")) >= 0:
        return raw[cut + 2:]
    return raw


def explain(body: bytes, merchants: MerchantBook) -> Explanation:
    """The verdict is the router's own (``read_notification``); the steps say how it came."""
    try:
        _, payment = read_notification(body, merchants)
    except Refused as refused:
        errcode, errmsg, found = refused.errcode, refused.reason, None
    else:
        errcode, errmsg = ErrCode.OK, "ok"
        found = msgspec.to_builtins(payment)
    return Explanation(errcode=errcode, errmsg=errmsg, steps=_steps(body, merchants),
                       payment=found)


def _steps(body: bytes, merchants: MerchantBook) -> list[str]:
    steps = [f"request: {len(body)} bytes"]
    try:
        envelope = decode_envelope(body)
    except msgspec.DecodeError as exc:
        return [*steps, f"envelope: cannot be read: {exc}"]
    steps.append(f"envelope: appid={envelope.appid} mch_id={envelope.mch_id}"
                 f" nonce_str={envelope.nonce_str} sign={envelope.sign or '(none)'}")
    merchant = merchants.find(envelope.appid, envelope.mch_id)
    if merchant is None:
        return [*steps, "merchant: not in the config (check [[merchants]] appid and mch_id)"]
    accepted = ", ".join(sorted(merchant.sign_types))
    steps.append(f"merchant: found; accepts {accepted}; {len(merchant.keys)} key set(s)")
    try:
        fields = signed_fields(body)
    except msgspec.DecodeError as exc:
        return [*steps, f"signed fields: cannot be read: {exc}"]
    steps.append("signing string (key masked): "
                 + signing_string(fields, MASKED_KEY).decode(errors="replace"))
    steps.extend(_signs(merchant, fields, envelope.sign))
    steps.extend(_decryptions(merchant, envelope))
    return steps


def _key_set(index: int) -> str:
    return "current keys" if index == 0 else f"previous_keys[{index - 1}]"


def _signs(merchant: Merchant, fields: dict[str, str], received: str) -> list[str]:
    lines = []
    for index, keys in enumerate(merchant.keys):
        for sign_type in sorted(merchant.sign_types):
            expected = keys.signer.sign(fields, sign_type)
            verdict = "match" if expected == received.upper() else "no match"
            lines.append(f"sign, {_key_set(index)}, {sign_type}: expected {expected},"
                         f" received {received or '(none)'}: {verdict}")
    return lines


def _decryptions(merchant: Merchant, envelope: Any) -> list[str]:
    lines = []
    for index, keys in enumerate(merchant.keys):
        where = f"decrypt, {_key_set(index)}"
        try:
            plaintext = keys.aes.decrypt(envelope.encrypted_data, envelope.iv)
        except DecryptError as exc:
            lines.append(f"{where}: fails: {exc}")
            continue
        try:
            payment = decode_payment(plaintext, envelope)
        except PayloadError as exc:
            lines.append(f"{where}: {len(plaintext)} bytes, not a valid payment: {exc}")
            continue
        lines.append(
            f"{where}: payment transaction_id={payment.transaction_id}"
            f" total_fee={payment.total_fee} ({payment.total_fee / 100:.2f} yuan)"
            f" repay_no={payment.repay_no} time_end={payment.time_end}"
            f" openid={mask_openid(payment.openid)} orders={len(payment.order)}")
    return lines
