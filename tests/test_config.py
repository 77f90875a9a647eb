from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import arrears_router
from arrears_router.config import ConfigError, load_config, parse_config
from arrears_router.wire.signature import SignType

REPO = Path(__file__).resolve().parents[1]

MERCHANT = """
[[merchants]]
appid = "wx1"
mch_id = "m1"
sign_key = "k"
aes_key = "0123456789abcdef"
"""


def parse(text: str, base: Path = Path("/srv/router")) -> object:
    return parse_config(text, base)


def test_this_repo_is_the_core_package_imported() -> None:
    assert Path(arrears_router.__file__).resolve().parent == REPO / "core"


def test_the_repos_config_runs_out_of_the_box(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARREARS_DEMO_SIGN_KEY", raising=False)
    monkeypatch.delenv("ARREARS_DEMO_AES_KEY", raising=False)
    config = load_config(REPO / "config.toml")
    assert config.server.callback_path == "/ridecode/arrears"
    assert config.store.url == f"sqlite:///{REPO / 'data' / 'arrears-router.db'}"
    [merchant] = config.merchants
    assert merchant.sign_types == (SignType.HMAC_SHA256,)


def test_defaults() -> None:
    config = parse_config(MERCHANT, Path("/srv/router"))
    assert config.server.port == 8080
    assert config.server.max_body_bytes == 65_536
    assert config.merchants[0].sign_types == (SignType.HMAC_SHA256,)
    assert config.store.url == "sqlite:////srv/router/data/arrears-router.db"
    assert (config.store.keep_done, config.store.keep_quarantine) == (
        timedelta(days=30), timedelta(days=90))


def test_environment_values_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_SIGN_KEY", "from-env")
    text = MERCHANT.replace('"k"', '"${TEST_SIGN_KEY}"').replace(
        '"0123456789abcdef"', '"${TEST_UNSET_AES:-fedcba9876543210}"'
    )
    merchant = parse_config(text, Path(".")).merchants[0]
    assert (merchant.sign_key, merchant.aes_key) == ("from-env", "fedcba9876543210")


@pytest.mark.parametrize(("written", "age"), [
    ("45s", timedelta(seconds=45)), ("15m", timedelta(minutes=15)),
    ("12h", timedelta(hours=12)), ("30d", timedelta(days=30)), ("1s", timedelta(seconds=1)),
    ("${TEST_KEEP:-36h}", timedelta(hours=36)),
])
def test_retention_ages(written: str, age: timedelta) -> None:
    store = parse_config(f'[store]\nkeep_done = "{written}"\nkeep_quarantine = "{written}"\n'
                         f"{MERCHANT}", Path(".")).store
    assert (store.keep_done, store.keep_quarantine) == (age, age)


def test_relative_and_absolute_sqlite_paths(tmp_path: Path) -> None:
    relative = parse_config(f'[store]\nurl = "sqlite:///db/x.db"\n{MERCHANT}', tmp_path)
    assert relative.store.url == f"sqlite:///{tmp_path / 'db' / 'x.db'}"
    absolute = parse_config(f'[store]\nurl = "sqlite:////var/x.db"\n{MERCHANT}', tmp_path)
    assert absolute.store.url == "sqlite:////var/x.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "merchants: required key is missing"),
        (f"[server]\nprot = 1\n{MERCHANT}", "server.prot: unknown key"),
        (f'[server]\nport = "80"\n{MERCHANT}', "server.port: Expected `int`, got `str`"),
        (f"[server]\nport = 70000\n{MERCHANT}", "server.port: Expected `int` <= 65535"),
        (f'[server]\ncallback_path = "x"\n{MERCHANT}',
         "server.callback_path: Expected `str` matching"),
        (f"[server]\nmax_body_bytes = 10\n{MERCHANT}",
         "server.max_body_bytes: Expected `int` >= 1024"),
        (MERCHANT.replace('"k"', '"${NOT_SET_ANYWHERE}"'),
         "merchants[0].sign_key: environment variable NOT_SET_ANYWHERE is not set"),
        (MERCHANT.replace("0123456789abcdef", "short"),
         "merchants[0].aes_key: an AES key is 16, 24 or 32 bytes; this one is 5 bytes"),
        (MERCHANT + 'sign_types = ["SHA1"]',
         "merchants[0].sign_types[0]: Invalid enum value 'SHA1'"),
        (MERCHANT + "sign_types = []", "merchants[0].sign_types: Expected `array` of length >= 1"),
        (MERCHANT + MERCHANT, "merchants[1]: appid 'wx1' with mch_id 'm1' is configured twice"),
        (MERCHANT + '[[merchants.previous_keys]]\nsign_key = "old"\naes_key = "hex:zz"',
         "merchants[0].previous_keys[0].aes_key: cannot decode the hex AES key"),
        ("[server", "not valid TOML"),
        *((f"[store]\n{key} = {bad}\n{MERCHANT}",
           f"store.{key}: a duration is a whole number from 1 to 99999 and a unit, s, m, h or d"
           f" (45s, 15m, 12h, 30d); got {shown}")
          for key in ("keep_done", "keep_quarantine")
          for bad, shown in (('"30 days"', "'30 days'"), ("30", "30"), ('"0d"', "'0d'"),
                             ('"1d12h"', "'1d12h'"), ('"1w"', "'1w'"), ('"-1d"', "'-1d'"),
                             ('"100000d"', "'100000d'"))),
        (f'[store]\nkeep = "30d"\n{MERCHANT}', "store.keep: unknown key"),
    ],
)
def test_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert message in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml")
