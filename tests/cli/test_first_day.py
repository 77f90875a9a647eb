"""What a new user meets on the first day: demo keys, clear start-up errors, one rule for
times, choices listed, a pipe closed early — each as a user runs the command."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = """
[[merchants]]
appid = "wxdemo"
mch_id = "m1"
sign_key = "demo0sign0key0not0for0production"
aes_key = "demo-aes-256-key-not-for-prod-00"
"""
EVERYWHERE = "0.0.0.0"  # noqa: S104 -- what the router must refuse with demo keys
OWN = DEMO.replace("demo0sign0key0not0for0production", "own-sign-key").replace(
    "demo-aes-256-key-not-for-prod-00", "0123456789abcdef")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "arrears_router", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, check=False)


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_demo_keys_are_refused_on_a_listener_others_can_reach(tmp_path: Path) -> None:
    text = f'[server]\nhost = "{EVERYWHERE}"\n{DEMO}'
    result = run("check-config", "--config", config(tmp_path, text))
    assert result.returncode != 0
    assert "merchants[0].sign_key: the public demo key" in result.stderr


def test_serve_refuses_demo_keys_when_host_opens_them_to_the_network(tmp_path: Path) -> None:
    result = run("serve", "--host", EVERYWHERE, "--port", "0", "--config", config(tmp_path, DEMO))
    assert result.returncode != 0
    assert "the public demo key, with the router listening on 0.0.0.0" in result.stderr


def test_check_config_warns_of_demo_keys_on_loopback(tmp_path: Path) -> None:
    result = run("check-config", "--config", config(tmp_path, DEMO))
    assert result.returncode == 0, result.stderr
    assert "warning: merchants[0].sign_key, merchants[0].aes_key: the PUBLIC DEMO KEYS" in (
        result.stdout)
    own = run("check-config", "--config", config(tmp_path, OWN))
    assert "warning" not in own.stdout


def test_a_port_in_use_is_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", "--port", str(port), "--config", config(tmp_path, OWN))
    assert result.returncode != 0
    assert f"serve: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_choice_lists_the_valid_ones(tmp_path: Path) -> None:
    text = OWN + 'sign_types = ["SHA1"]\n[plugins.ledger]\nmode = "on"\n'
    result = run("check-config", "--config", config(tmp_path, text))
    assert "merchants[0].sign_types[0]: Invalid enum value 'SHA1' (one of: MD5, HMAC-SHA256)" in (
        result.stderr)
    text = OWN + '[plugins.ledger]\nmode = "on"\n'
    result = run("check-config", "--config", config(tmp_path, text))
    assert "plugins.ledger.mode: Invalid enum value 'on' (one of: enabled, paused, disabled)" in (
        result.stderr)


@pytest.mark.parametrize(("key", "prefix"), [("A" * 43 + "=", "base64"), ("ab" * 32, "hex")])
def test_an_aes_key_that_is_encoded_suggests_its_prefix(
    tmp_path: Path, key: str, prefix: str
) -> None:
    result = run("check-config", "--config",
                 config(tmp_path, OWN.replace("0123456789abcdef", key)))
    assert f'it reads as {prefix}: write it as "{prefix}:..."' in result.stderr


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("arrears-router ")


def test_a_time_without_a_zone_is_refused_not_guessed(tmp_path: Path) -> None:
    result = run("replay", "--plugin", "x", "--since", "2026-11-25T09:00",
                 "--config", config(tmp_path, OWN))
    assert result.returncode == 2
    assert "'2026-11-25T09:00' has no zone: add one, e.g. 2026-11-25T09:00+08:00" in result.stderr


def test_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    path = config(tmp_path, OWN)
    listing = subprocess.Popen(
        [sys.executable, "-m", "arrears_router", "check-config", "--config", path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert listing.stdout is not None and listing.stderr is not None
    listing.stdout.close()  # as `| head` does once it has its lines
    stderr = listing.stderr.read().decode()
    assert listing.wait(timeout=60) in (0, 141)
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr
