"""The router's configuration: ``config.toml``, typed, with ``${ENV}`` values.

Every error names the TOML key it is about, so an operator can fix the file without reading code.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import msgspec
import msgspec.inspect as mi

from arrears_router.logs import LogFormat, LogLevel
from arrears_router.store import StoreError, check_store_url
from arrears_router.wire.cipher import KeyFormatError, parse_aes_key
from arrears_router.wire.signature import SignType

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AdminConfig",
    "AdminToken",
    "Config",
    "ConfigError",
    "Duration",
    "KeySet",
    "LogConfig",
    "MerchantConfig",
    "ServerConfig",
    "StoreConfig",
    "TokenScope",
    "check_demo_keys",
    "config_path",
    "demo_keys_in",
    "describe",
    "is_loopback",
    "load_config",
    "parse_config",
    "store_url",
]

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV = "ARREARS_ROUTER_CONFIG"
MIN_TOKEN_LENGTH = 16
"""An admin token is a password a script sends: short ones can be guessed."""
DEMO_KEYS = frozenset({"demo0sign0key0not0for0production", "demo-aes-256-key-not-for-prod-00"})
"""The demo merchant's keys in the repository's config.toml: public, so anyone can sign and
encrypt with them."""


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class ServerConfig(_Section, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    callback_path: Annotated[str, msgspec.Meta(pattern="^/")] = "/ridecode/arrears"
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 65_536
    """A notification is a few KB; an unauthenticated request must not make the router read
    (and decode) much more."""


_DURATION = re.compile(r"([0-9]{1,5})([smhd])")  # 99999d: 273 years, past any need
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(timedelta):
    """A span of time written ``45s``, ``15m``, ``12h`` or ``30d`` in the config: one whole,
    positive number and its unit (no mixes: ``36h``, not ``1d12h``), read with the config."""

    @classmethod
    def parse(cls, text: object) -> Duration:
        found = _DURATION.fullmatch(text) if isinstance(text, str) else None
        if found is None or int(found[1]) == 0:
            raise ValueError(f"a duration is a whole number from 1 to 99999 and a unit, s, m, h"
                             f" or d (45s, 15m, 12h, 30d); got {text!r}")
        return cls(seconds=int(found[1]) * _UNIT_SECONDS[found[2]])


class StoreConfig(_Section, frozen=True, kw_only=True):
    url: str = "sqlite:///data/arrears-router.db"
    """``sqlite:///relative/to/config.db`` or ``sqlite:////absolute/path.db``."""
    keep_done: Duration = Duration(days=30)
    """Done deliveries older than this are pruned; the payments themselves are kept."""
    keep_quarantine: Duration = Duration(days=90)
    """Quarantined requests not seen again for this long are pruned."""


class KeySet(_Section, frozen=True, kw_only=True):
    sign_key: Annotated[str, msgspec.Meta(min_length=1)]
    aes_key: Annotated[str, msgspec.Meta(min_length=1)]
    """``base64:...``, ``hex:...`` or plain text whose UTF-8 bytes are the key."""


class MerchantConfig(KeySet, frozen=True, kw_only=True):
    appid: Annotated[str, msgspec.Meta(min_length=1)]
    mch_id: Annotated[str, msgspec.Meta(min_length=1)]
    sign_types: Annotated[tuple[SignType, ...], msgspec.Meta(min_length=1)] = (
        SignType.HMAC_SHA256,
    )
    previous_keys: tuple[KeySet, ...] = ()
    """Keys still accepted while WeChat rotates to the new ones; tried after the current."""


class LogConfig(_Section, frozen=True, kw_only=True):
    """How ``serve`` (both its processes) and ``worker`` log, to standard error; the other
    commands keep their human output."""

    format: LogFormat = "text"
    """``json``: one object a line, with stable keys (see ``arrears_router.logs``)."""
    level: LogLevel = "info"


class TokenScope(StrEnum):
    READ = "read"
    """Sees everything an operator may see; changes nothing."""
    OPERATE = "operate"
    """Also changes: plugin modes, replays, re-ingests."""


class AdminToken(_Section, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]
    """Who holds it: the actor in the audit log."""
    scope: TokenScope
    token: Annotated[str, msgspec.Meta(min_length=MIN_TOKEN_LENGTH)]
    """Best from ``${ENV}``; e.g. ``openssl rand -hex 32``."""


class AdminConfig(_Section, frozen=True, kw_only=True):
    """The admin listener: API, console and metrics, off unless a token is configured."""

    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8081
    tokens: tuple[AdminToken, ...] = ()
    metrics_dir: str = ""
    """Where every process of this host writes its metrics; default: one per store, under
    the system's temporary folder."""

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)


class Config(_Section, frozen=True, kw_only=True):
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()
    log: LogConfig = LogConfig()
    admin: AdminConfig = AdminConfig()
    merchants: Annotated[tuple[MerchantConfig, ...], msgspec.Meta(min_length=1)]
    plugins: dict[str, dict[str, Any]] = {}


class ConfigError(Exception):
    """The config cannot be used; the message names the file and the key."""


_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: str) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in every string value."""
    if isinstance(value, dict):
        return {
            key: _expand(item, f"{where}.{key}" if where else key) for key, item in value.items()
        }
    if isinstance(value, list):
        return [_expand(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name, default)
        if found is None:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return found

    return _ENV_REFERENCE.sub(substitute, value)


_FIELD_MESSAGE = re.compile(r"Object (contains unknown|missing required) field `([^`]*)`")


def describe(exc: msgspec.ValidationError, table: str = "", root: Any = None) -> str:
    """msgspec's ``Expected int, got str - at `$.port``` as ``TABLE.port: Expected ...``;
    an invalid choice lists the valid ones when ``root``, the type converted to, is given."""
    message, _, path = str(exc).partition(" - at `")
    key = path.rstrip("`").removeprefix("$").lstrip(".")
    if field := _FIELD_MESSAGE.fullmatch(message):
        kind, name = field.groups()
        key = f"{key}.{name}" if key else name
        message = "unknown key" if kind == "contains unknown" else "required key is missing"
    elif message.startswith("Invalid enum value") and root is not None:
        choices = _choices_at(mi.type_info(root), _PATH_PART.findall(key))
        message += f" (one of: {', '.join(choices)})" if choices else ""
    key = ".".join(part for part in (table, key) if part)
    return f"{key or '(top level)'}: {message}"


_PATH_PART = re.compile(r"[^.\[\]]+")


def _choices_at(info: mi.Type, parts: list[str]) -> list[str]:
    """The values an enum or literal at ``parts`` (keys and indexes) of a type may take."""
    for part in [*parts, None]:
        while isinstance(info, mi.Metadata | mi.UnionType):
            if isinstance(info, mi.Metadata):
                info = info.type
            else:
                options = [t for t in info.types if not isinstance(t, mi.NoneType)]
                if len(options) != 1:
                    return []
                info = options[0]
        if part is None:
            break
        if isinstance(info, mi.StructType):
            fields = {f.encode_name: f.type for f in info.fields}
            if part not in fields:
                return []
            info = fields[part]
        elif isinstance(info, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
            info = info.item_type
        elif isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return []
    if isinstance(info, mi.EnumType):
        return [str(member.value) for member in info.cls]
    if isinstance(info, mi.LiteralType):
        return [str(value) for value in info.values]
    return []


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach a listener on ``host``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def demo_keys_in(config: Config) -> list[str]:
    """The keys of the config that are the public demo keys, by name."""
    found = []
    for i, merchant in enumerate(config.merchants):
        keysets = [(f"merchants[{i}]", merchant), *(
            (f"merchants[{i}].previous_keys[{j}]", keys)
            for j, keys in enumerate(merchant.previous_keys))]
        for where, keys in keysets:
            found += [f"{where}.{name}" for name in ("sign_key", "aes_key")
                      if getattr(keys, name) in DEMO_KEYS]
    return found


def check_demo_keys(config: Config, host: str) -> None:
    """Public demo keys let anyone forge a payment: only a loopback listener may use them."""
    found = demo_keys_in(config)
    if found and not is_loopback(host):
        raise ConfigError(
            f"{found[0]}: the public demo key, with the router listening on {host}: anyone who"
            " reaches it could forge payments that unblock riders; set this merchant's own"
            " keys (or listen on 127.0.0.1 only, for a demo)")


def _check_merchants(merchants: tuple[MerchantConfig, ...]) -> None:
    seen: set[tuple[str, str]] = set()
    for i, merchant in enumerate(merchants):
        identity = (merchant.appid, merchant.mch_id)
        if identity in seen:
            raise ConfigError(
                f"merchants[{i}]: appid {merchant.appid!r} with mch_id {merchant.mch_id!r} "
                "is configured twice"
            )
        seen.add(identity)
        keysets: list[tuple[str, KeySet]] = [(f"merchants[{i}]", merchant)]
        keysets += [
            (f"merchants[{i}].previous_keys[{j}]", keys)
            for j, keys in enumerate(merchant.previous_keys)
        ]
        for where, keys in keysets:
            try:
                parse_aes_key(keys.aes_key)
            except KeyFormatError as exc:
                raise ConfigError(f"{where}.aes_key: {exc}") from None


def _check_admin_tokens(tokens: tuple[AdminToken, ...]) -> None:
    names: set[str] = set()
    secrets: set[str] = set()
    for i, token in enumerate(tokens):
        if token.name in names:
            raise ConfigError(f"admin.tokens[{i}].name: {token.name!r} is configured twice")
        if token.token in secrets:  # which name would be the actor?
            raise ConfigError(f"admin.tokens[{i}].token: the same token as another one")
        names.add(token.name)
        secrets.add(token.token)


def _decode(kind: type, value: Any) -> Any:
    """The config's own types; a ValueError names its key (msgspec adds where it is)."""
    if kind is Duration:
        return Duration.parse(value)
    raise NotImplementedError(kind)


def parse_config(text: str, base_dir: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    data = _expand(data, "")
    try:
        config = msgspec.convert(data, Config, dec_hook=_decode)
    except msgspec.ValidationError as exc:
        raise ConfigError(describe(exc, root=Config)) from None
    _check_merchants(config.merchants)
    _check_admin_tokens(config.admin.tokens)
    check_demo_keys(config, config.server.host)
    try:  # the check that opening it makes, so what passes here opens there
        check_store_url(config.store.url)
    except StoreError as exc:
        raise ConfigError(f"store.url: {exc}") from None
    store = msgspec.structs.replace(config.store, url=_anchor(config.store.url, base_dir))
    admin = config.admin
    if admin.metrics_dir:  # as the store's path: every process reads the same folder
        admin = msgspec.structs.replace(
            admin, metrics_dir=str((base_dir / admin.metrics_dir).resolve()))
    return msgspec.structs.replace(config, store=store, admin=admin)


def _anchor(url: str, base_dir: Path) -> str:
    """A relative SQLite path is read from the config file's folder, not the working one."""
    scheme, sep, path = url.partition(":///")
    if scheme != "sqlite" or not sep or path.startswith("/"):
        return url
    return f"sqlite:///{(base_dir / path).resolve()}"


def config_path(explicit: str | None) -> Path:
    """``--config``, else ``$ARREARS_ROUTER_CONFIG``, else ``./config.toml``."""
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def store_url(config: str | None = None) -> str:
    """The store URL in the router's config (``config``, else ``$ARREARS_ROUTER_CONFIG``, else
    ``./config.toml``): for a plugin's own commands that read its books.
    """
    return load_config(config_path(config)).store.url


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return parse_config(text, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
