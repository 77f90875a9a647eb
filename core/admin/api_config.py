"""The admin API's views of the config and of the ledger's books: what the router is set up
to do, and what the ledger plugin has booked. Neither ever shows a key, token or secret."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import closing
from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import get
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from arrears_router.admin.api_common import NOT_FOUND, READS, ConflictException
from arrears_router.admin.context import Admin
from arrears_router.admin.operations import Conflict, NotFound, configured_after
from arrears_router.config import Config, TokenScope
from arrears_router.logs import LogFormat, LogLevel
from arrears_router.plugins.ledger import Ledger, open_reader
from arrears_router.plugins.ledger_books import Balance, BooksError, balances, yuan
from arrears_router.store import Mode, shown_store_url
from arrears_router.wire.signature import SignType

__all__ = ["CONFIG_HANDLERS", "ConfigSummary", "LedgerBalance", "config_summary"]


class ServerSummary(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    callback_path: str
    max_body_bytes: int


class StoreSummary(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    """Without its password, if it has one."""
    keep_done_s: float
    keep_quarantine_s: float


class MerchantSummary(msgspec.Struct, frozen=True, kw_only=True):
    appid: str
    mch_id: str
    sign_types: list[SignType]
    previous_keys: int
    """How many key sets are still accepted besides the current one (a rotation)."""


class PluginSummary(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    mode: Mode | None
    """As the config says (``GET plugins`` has the mode in force); null if what it says is
    not a mode (the router refuses that edit, and keeps the last good config)."""
    after: list[str]


class TokenSummary(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    scope: TokenScope


class AdminSummary(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    tokens: list[TokenSummary]


class LogSummary(msgspec.Struct, frozen=True, kw_only=True):
    format: LogFormat
    level: LogLevel


class ConfigSummary(msgspec.Struct, frozen=True, kw_only=True):
    server: ServerSummary
    store: StoreSummary
    merchants: list[MerchantSummary]
    plugins: list[PluginSummary]
    """Their modes and order only: a plugin's own settings may hold its secrets."""
    admin: AdminSummary
    log: LogSummary


def config_summary(config: Config) -> ConfigSummary:
    """What the config sets up, every key, token and secret left out."""
    server, store, admin = config.server, config.store, config.admin
    return ConfigSummary(
        server=ServerSummary(host=server.host, port=server.port,
                             callback_path=server.callback_path,
                             max_body_bytes=server.max_body_bytes),
        store=StoreSummary(url=shown_store_url(store.url),
                           keep_done_s=store.keep_done.total_seconds(),
                           keep_quarantine_s=store.keep_quarantine.total_seconds()),
        merchants=[MerchantSummary(appid=m.appid, mch_id=m.mch_id, sign_types=list(m.sign_types),
                                   previous_keys=len(m.previous_keys))
                   for m in config.merchants],
        plugins=[PluginSummary(name=name, mode=_mode(table), after=configured_after(table))
                 for name, table in config.plugins.items()],
        admin=AdminSummary(host=admin.host, port=admin.port, tokens=[
            TokenSummary(name=t.name, scope=t.scope) for t in admin.tokens]),
        log=LogSummary(format=config.log.format, level=config.log.level),
    )


def _mode(table: Mapping[str, Any]) -> Mode | None:
    try:
        return Mode(table.get("mode", Mode.ENABLED))
    except ValueError:
        return None


@get("/config", summary="The config in force, without a key, token or secret", raises=READS)
async def show_config(admin: Admin) -> ConfigSummary:
    return config_summary(admin.live.config)


class AccountBalance(msgspec.Struct, frozen=True, kw_only=True):
    account: str
    debit_fen: int
    credit_fen: int
    balance_fen: int
    """Debits less credits: the clearing account's is what WeChat owes the operator."""
    balance_yuan: str

    @classmethod
    def of(cls, balance: Balance) -> AccountBalance:
        return cls(account=balance.account, debit_fen=balance.debit_fen,
                   credit_fen=balance.credit_fen, balance_fen=balance.balance_fen,
                   balance_yuan=yuan(balance.balance_fen))


class LedgerBalance(msgspec.Struct, frozen=True, kw_only=True):
    day: date | None
    accounts: list[AccountBalance]
    total: AccountBalance
    """Of the accounts listed: debits and credits are equal in double entry."""


def _balances(store_url: str, day: date | None, account: str | None) -> list[Balance]:
    with closing(open_reader(store_url)) as reader:
        return balances(reader, day=day.isoformat() if day else None, account=account)


@get("/ledger/balance", summary="The ledger's balances by account (`ledger balance`)",
     raises=[*READS, *NOT_FOUND, ConflictException])
async def ledger_balance(
    admin: Admin,
    account: Annotated[str | None, Parameter(
        min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$",
        description="an account, or every account under it (wechat_clearing)")] = None,
    day: Annotated[date | None, Parameter(description="one CST day")] = None,
) -> LedgerBalance:
    config = admin.live.config
    if Ledger.name not in config.plugins:
        raise NotFound("the ledger plugin is not configured: no [plugins.ledger] in the config")
    try:  # the books' reader is synchronous: off the event loop
        found = await asyncio.to_thread(_balances, config.store.url, day, account)
    except BooksError as exc:  # configured, but its books not made yet: no router ran it
        raise Conflict(f"ledger: {exc}") from None
    total = Balance(account="total", debit_fen=sum(b.debit_fen for b in found),
                    credit_fen=sum(b.credit_fen for b in found))
    return LedgerBalance(day=day, accounts=[AccountBalance.of(b) for b in found],
                         total=AccountBalance.of(total))


CONFIG_HANDLERS: list[ControllerRouterHandler] = [show_config, ledger_balance]
