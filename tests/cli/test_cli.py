"""The command line, run as a user runs it: a subprocess of `python -m arrears_router`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from arrears_router.store.sqlite import SqliteStore
from tests.test_config import MERCHANT


def arrears_router(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arrears_router", *args], capture_output=True, text=True, timeout=60,
        check=False,
    )


def test_check_config_summarises_without_secrets(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(MERCHANT.replace('"k"', '"s3cr3t-sign-key"'))
    result = arrears_router("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "merchant appid=wx1 mch_id=m1 sign_types=HMAC-SHA256" in result.stdout
    assert "s3cr3t" not in result.stdout + result.stderr
    assert "0123456789abcdef" not in result.stdout + result.stderr


def test_a_bad_config_exits_non_zero_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(MERCHANT + "[server]\nport = -1\n")
    result = arrears_router("check-config", "--config", str(config))
    assert result.returncode != 0
    assert "server.port: Expected `int` >= 0" in result.stderr


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\n")
    result = arrears_router("serve", "--config", str(config), "--port", "0")
    assert result.returncode != 0
    assert "merchants: required key is missing" in result.stderr
    assert "listening" not in result.stdout


def test_reading_a_store_that_does_not_exist_says_so(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(MERCHANT)
    result = arrears_router("events", "list", "--config", str(config))
    assert result.returncode == 1
    assert "cannot open SQLite store" in result.stderr
    assert "the router creates it" in result.stderr
    assert not (tmp_path / "data").exists()  # reading never creates a store


def test_events_on_an_empty_store(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(MERCHANT)
    store = SqliteStore(str(tmp_path / "data" / "arrears-router.db"))
    asyncio.run(store.open())
    asyncio.run(store.close())
    listing = arrears_router("events", "list", "--json", "--config", str(config))
    assert (listing.returncode, listing.stdout) == (0, "")
    missing = arrears_router("events", "show", "T404", "--config", str(config))
    assert missing.returncode == 1
    assert "no stored payment with transaction_id 'T404'" in missing.stderr
