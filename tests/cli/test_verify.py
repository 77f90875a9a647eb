"""``arrears-router verify``: a captured request explained offline, as a merchant runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from arrears_router.config import MerchantConfig
from arrears_router.wire.notifier import Notifier, sample_payload

SIGN_KEY = "s3cr3t-verify-sign-key"
MERCHANT = MerchantConfig(appid="wxverify", mch_id="m-verify", sign_key=SIGN_KEY,
                          aes_key="0123456789abcdef")
CONFIG = f"""
[[merchants]]
appid = "{MERCHANT.appid}"
mch_id = "{MERCHANT.mch_id}"
sign_key = "{SIGN_KEY}"
aes_key = "{MERCHANT.aes_key}"
"""


def verify(tmp_path: Path, body: bytes, *extra: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    return subprocess.run(
        [sys.executable, "-m", "arrears_router", "verify", "-", "--config", str(config), *extra],
        input=body.decode(), capture_output=True, text=True, timeout=60, check=False,
    )


def test_a_good_notification_is_explained_and_would_be_accepted(tmp_path: Path) -> None:
    body = Notifier(MERCHANT).notification(sample_payload("T-VERIFY"))
    result = verify(tmp_path, body)
    assert result.returncode == 0, result.stderr
    assert "merchant: found" in result.stdout
    assert "signing string (key masked): appid=wxverify&encrypted_data=" in result.stdout
    assert "&key=********" in result.stdout
    assert ": match" in result.stdout
    assert "payment transaction_id=T-VERIFY total_fee=300 (3.00 yuan)" in result.stdout
    assert "verdict: errcode 0, would be accepted" in result.stdout
    assert SIGN_KEY not in result.stdout + result.stderr


def test_a_tampered_notification_shows_expected_against_received(tmp_path: Path) -> None:
    fields = msgspec.json.decode(Notifier(MERCHANT).notification(sample_payload("T1")))
    fields["nonce_str"] = "changed"
    result = verify(tmp_path, msgspec.json.encode(fields))
    assert result.returncode == 1
    [line] = [line for line in result.stdout.splitlines() if line.startswith("sign,")]
    expected, received = line.split("expected ")[1].split(", received ")
    assert received.startswith(fields["sign"])
    assert not expected.startswith(fields["sign"])
    assert line.endswith(": no match")
    assert "verdict: errcode 40003, refused: invalid signature" in result.stdout


def test_an_unknown_merchant_is_named(tmp_path: Path) -> None:
    other = msgspec.structs.replace(MERCHANT, mch_id="someone-else")
    result = verify(tmp_path, Notifier(other).notification(sample_payload("T1")), "--json")
    assert result.returncode == 1
    explanation = json.loads(result.stdout)
    assert explanation["errcode"] == 40002
    assert explanation["steps"][-1].startswith("merchant: not in the config")


def test_a_payload_field_error_is_precise(tmp_path: Path) -> None:
    body = Notifier(MERCHANT).notification(sample_payload("T1", total_fee="3.00"))
    result = verify(tmp_path, body)
    assert result.returncode == 1
    assert "not a valid payment" in result.stdout
    assert "total_fee" in result.stdout
    assert "verdict: errcode 40005" in result.stdout


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_a_whole_captured_http_request_is_read_for_its_body(tmp_path: Path, newline: str) -> None:
    body = Notifier(MERCHANT).notification(sample_payload("T-HTTP"))
    request = newline.join(["POST /ridecode/arrears HTTP/1.1", "Host: router",
                            "Content-Type: application/json", "", ""]).encode() + body
    result = verify(tmp_path, request)
    assert result.returncode == 0, result.stdout
    assert "transaction_id=T-HTTP" in result.stdout
