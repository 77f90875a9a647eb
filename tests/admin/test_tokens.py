"""Admin tokens: how they are configured, found, and kept out of logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from arrears_router.admin.live_config import LiveConfig
from arrears_router.admin.tokens import Principal, Tokens
from arrears_router.config import AdminToken, ConfigError, TokenScope, load_config, parse_config
from arrears_router.logs import secrets_in

MERCHANT = """
[[merchants]]
appid = "wx1"
mch_id = "m1"
sign_key = "k"
aes_key = "0123456789abcdef"
"""

ALICE = "alice-token-0123456789"
VIEWER = "viewer-token-0123456789"


def admin_config(tokens: str) -> str:
    return f"[admin]\nport = 0\n{tokens}\n{MERCHANT}"


def token_table(name: str, scope: str, token: str) -> str:
    return f'[[admin.tokens]]\nname = "{name}"\nscope = "{scope}"\ntoken = "{token}"\n'


def test_admin_is_off_without_a_token() -> None:
    config = parse_config(MERCHANT, Path("/srv"))
    assert not config.admin.enabled
    assert (config.admin.host, config.admin.port) == ("127.0.0.1", 8081)


def test_tokens_are_named_and_scoped() -> None:
    config = parse_config(admin_config(
        token_table("ops-alice", "operate", ALICE) + token_table("viewer", "read", VIEWER)
    ), Path("/srv"))
    assert config.admin.enabled
    assert [(t.name, t.scope) for t in config.admin.tokens] == [
        ("ops-alice", TokenScope.OPERATE), ("viewer", TokenScope.READ)]


@pytest.mark.parametrize(("tables", "error"), [
    (token_table("a", "operate", "short"), "admin.tokens[0].token: Expected `str` of length >= 16"),
    (token_table("a", "root", ALICE), "admin.tokens[0].scope: Invalid enum value 'root'"),
    (token_table("a b", "read", ALICE), "admin.tokens[0].name: Expected `str` matching"),
    (token_table("a", "read", ALICE) + token_table("a", "read", VIEWER),
     "admin.tokens[1].name: 'a' is configured twice"),
    (token_table("a", "read", ALICE) + token_table("b", "operate", ALICE),
     "admin.tokens[1].token: the same token as another one"),
])
def test_a_bad_token_is_an_error_naming_its_key(tables: str, error: str) -> None:
    with pytest.raises(ConfigError, match="^" + error.replace("[", r"\[").replace("]", r"\]")):
        parse_config(admin_config(tables), Path("/srv"))


def test_a_token_is_found_by_its_value_only() -> None:
    tokens = Tokens([AdminToken(name="ops-alice", scope=TokenScope.OPERATE, token=ALICE),
                     AdminToken(name="viewer", scope=TokenScope.READ, token=VIEWER)])
    assert tokens.find(ALICE) == Principal("ops-alice", TokenScope.OPERATE)
    assert tokens.find(VIEWER) == Principal("viewer", TokenScope.READ)
    assert tokens.find(ALICE[:-1]) is None
    assert tokens.find("") is None
    assert tokens.find(VIEWER).may_operate is False  # type: ignore[union-attr]


def test_tokens_are_kept_only_as_digests() -> None:
    tokens = Tokens([AdminToken(name="ops-alice", scope=TokenScope.OPERATE, token=ALICE)])
    assert ALICE.encode() not in repr(vars(tokens)).encode()


def test_token_values_are_secrets_and_their_names_are_not() -> None:
    config = parse_config(admin_config(token_table("ops-alice-the-operator", "operate", ALICE)),
                          Path("/srv"))
    found = secrets_in(config)
    assert ALICE in found
    assert "ops-alice-the-operator" not in found
    # A plugin's setting of that name holds secrets, a list of them too.
    assert secrets_in({"plugins": {"x": {"api_tokens": ["plugin-token-0123"]}}}) == {
        "plugin-token-0123"}


def test_a_config_edit_revokes_a_token_and_a_bad_edit_keeps_the_last_good(
        tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(admin_config(token_table("ops-alice", "operate", ALICE)))
    live = LiveConfig(load_config(path), path)
    assert live.tokens.find(ALICE) is not None

    path.write_text(admin_config(token_table("viewer", "read", VIEWER)))
    os.utime(path, ns=(1, 1))  # a new stamp whatever the clock's resolution
    assert live.tokens.find(ALICE) is None
    assert live.tokens.find(VIEWER) == Principal("viewer", TokenScope.READ)

    path.write_text("not toml [")
    os.utime(path, ns=(2, 2))
    assert live.tokens.find(VIEWER) is not None
