"""The command line, run as a user runs it: a subprocess of `python -m arrears_router`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from arrears_router.store.sqlite import SqliteStore
from tests.harness import MERCHANT, cli, write_config


def test_check_config_summarises_without_secrets(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml",
                          merchants=[{**MERCHANT, "sign_key": "s3cr3t-sign-key"}])
    result = cli("check-config", config=config)
    assert result.returncode == 0, result.stderr
    assert "merchant appid=wx1 mch_id=m1 sign_types=HMAC-SHA256" in result.stdout
    assert "s3cr3t" not in result.stdout + result.stderr
    assert "0123456789abcdef" not in result.stdout + result.stderr


def test_check_config_names_admin_tokens_never_their_values(tmp_path: Path) -> None:
    off = cli("check-config", config=write_config(tmp_path / "off.toml"))
    assert "admin off (no [[admin.tokens]])" in off.stdout
    config = write_config(tmp_path / "c.toml", admin={"port": 9091, "tokens": [
        {"name": "ops-alice", "scope": "operate", "token": "alice-token-0123456789"},
        {"name": "viewer", "scope": "read", "token": "viewer-token-0123456789"}]})
    result = cli("check-config", config=config)
    assert "admin on 127.0.0.1:9091: ops-alice (operate), viewer (read)" in result.stdout
    assert "token-0123456789" not in result.stdout + result.stderr


def test_a_bad_config_exits_non_zero_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", server={"port": -1})
    result = cli("check-config", config=config)
    assert result.returncode != 0
    assert "server.port: Expected `int` >= 0" in result.stderr


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server]\n")
    result = cli("serve", "--port", "0", config=config)
    assert result.returncode != 0
    assert "merchants: required key is missing" in result.stderr
    assert "listening" not in result.stdout


def test_reading_a_store_that_does_not_exist_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    result = cli("events", "list", config=config)
    assert result.returncode == 1
    assert "cannot open SQLite store" in result.stderr
    assert "the router creates it" in result.stderr
    assert not (tmp_path / "router.db").exists()  # reading never creates a store


def test_events_on_an_empty_store(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    store = SqliteStore(str(tmp_path / "router.db"))
    asyncio.run(store.open())
    asyncio.run(store.close())
    listing = cli("events", "list", "--json", config=config)
    assert (listing.returncode, listing.stdout) == (0, "")
    missing = cli("events", "show", "T404", config=config)
    assert missing.returncode == 1
    assert "no stored payment with transaction_id 'T404'" in missing.stderr
