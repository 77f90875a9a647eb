"""A store URL the router cannot open is a config error in check-config and serve alike,
naming ``store.url`` and never what the URL holds besides its scheme (a password)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness import cli, postgres_schema, write_config


@pytest.mark.parametrize("command", [("check-config",), ("serve", "--port", "0")])
@pytest.mark.parametrize(("url", "scheme"), [
    ("mysql://router:s3cr3t@db.internal/arrears", "mysql"),
    ("sqlite://relative.db", "sqlite"),  # two slashes: no path
])
def test_an_unsupported_store_url_is_a_config_error(
    tmp_path: Path, command: tuple[str, ...], url: str, scheme: str
) -> None:
    config = write_config(tmp_path / "config.toml", store={"url": url})
    result = cli(*command, config=config)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"config error: {config}: store.url: unsupported store url: scheme {scheme!r};"
        " expected sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
    assert "s3cr3t" not in result.stdout + result.stderr
    assert "listening" not in result.stdout


@pytest.mark.parametrize("command", [("check-config",), ("migrate", "--check")])
def test_a_postgresql_url_libpq_cannot_read_is_a_config_error_that_hides_the_password(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    config = write_config(tmp_path / "config.toml",
                          store={"url": "postgresql://router:s3cr3t@db.internal/arrears?bogus=1"})
    result = cli(*command, config=config)
    assert result.returncode == 1
    assert "store.url: not a valid PostgreSQL URL" in result.stderr
    assert "s3cr3t" not in result.stdout + result.stderr


def test_an_unreachable_postgresql_is_a_store_error_that_hides_the_password(
    tmp_path: Path,
) -> None:
    # Port 9 on loopback: nothing listens, so the connection is refused at once.
    config = write_config(tmp_path / "config.toml",
                          store={"url": "postgresql://router:s3cr3t@127.0.0.1:9/arrears"})
    result = cli("migrate", "--check", config=config)
    assert result.returncode == 1
    assert result.stderr.startswith("store error: cannot read the PostgreSQL store:")
    assert "s3cr3t" not in result.stdout + result.stderr


@pytest.mark.parametrize("url", [
    "postgresql://router:s3cr3t@db.internal:5432/arrears",
    "postgresql://router@db.internal/arrears?sslmode=require&password=s3cr3t",
])
def test_check_config_shows_a_postgresql_url_without_its_password(
    tmp_path: Path, url: str
) -> None:
    config = write_config(tmp_path / "config.toml", store={"url": url})
    result = cli("check-config", config=config)
    assert result.returncode == 0, result.stderr
    assert "store postgresql://router" in result.stdout
    assert "***" in result.stdout
    assert "s3cr3t" not in result.stdout + result.stderr


def test_a_role_postgresql_refuses_is_one_clear_store_error(tmp_path: Path) -> None:
    with postgres_schema() as url:
        refused = re.sub(r"://([^@/]*@)?", "://no_such_role_here:s3cr3t@", url, count=1)
        config = write_config(tmp_path / "config.toml", store={"url": refused})
        result = cli("events", "list", config=config)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr  # one line, not a pool's retries
    assert result.stderr.startswith("store error: cannot open the PostgreSQL store:")
    assert 'role "no_such_role_here" does not exist' in result.stderr
    assert "s3cr3t" not in result.stderr
