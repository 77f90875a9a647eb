"""``arrears-router simulate``: send correctly signed, encrypted notifications to a router.

This is how a merchant tests its own set-up: same keys, same wire, same answers as WeChat
would get. ``--tamper`` proves forged requests are refused; ``--duplicate`` proves retries
are stored once.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec

from arrears_router.cli.common import Commands, load, print_json
from arrears_router.config import Config, MerchantConfig
from arrears_router.errcodes import ErrCode
from arrears_router.wire.envelope import Reply
from arrears_router.wire.notifier import Notifier, sample_payload

__all__ = ["Outcome", "add_commands", "run_simulation", "tamper"]

JSON = {"content-type": "application/json"}
TIMEOUT = aiohttp.ClientTimeout(total=10)


def add_commands(commands: Commands) -> None:
    simulate = commands.add("simulate",
                            "send signed, encrypted test notifications to a running router",
                            cmd_simulate, json=True)
    simulate.add_argument("--url", help="callback URL (default: from [server] in the config)")
    simulate.add_argument("--merchant", metavar="MCH_ID", help="default: the first merchant")
    simulate.add_argument("--count", type=int, default=1, help="notifications to send")
    simulate.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    simulate.add_argument("--duplicate", action="store_true",
                          help="send every notification twice, as WeChat's retries do")
    simulate.add_argument("--tamper", action="store_true",
                          help="also send a tampered copy of each; it must be refused (40003)")


def cmd_simulate(args: argparse.Namespace) -> None:
    config = load(args)
    merchant = pick_merchant(config, args.merchant)

    def report(outcome: Outcome) -> None:
        if args.json:
            print_json(outcome)
        else:
            print(f"{outcome.transaction_id} {outcome.sent:<9} errcode={outcome.errcode}"
                  f" {outcome.errmsg}", flush=True)

    outcomes = asyncio.run(run_simulation(
        merchant, args.url or default_url(config), count=args.count,
        concurrency=args.concurrency, duplicate=args.duplicate, tampered=args.tamper,
        report=report,
    ))
    print_summary(outcomes)
    if not all(o.expected for o in outcomes):
        raise SystemExit(1)


class Outcome(msgspec.Struct):
    transaction_id: str
    sent: str
    """``original``, ``duplicate`` or ``tampered``."""
    errcode: int
    errmsg: str
    expected: bool
    """Whether WeChat would be content with this answer (0; 40003 for a tampered copy)."""


def new_transaction_id() -> str:
    """28 digits, the shape of a WeChat Pay transaction number."""
    return f"42000{secrets.randbelow(10**23):023d}"


def tamper(fields: dict[str, Any]) -> dict[str, Any]:
    """The same signed request with one signed character changed, as a forger would."""
    data = fields["encrypted_data"]
    flipped = "B" if data[0] != "B" else "C"
    return {**fields, "encrypted_data": flipped + data[1:]}


def pick_merchant(config: Config, mch_id: str | None) -> MerchantConfig:
    for merchant in config.merchants:
        if mch_id is None or merchant.mch_id == mch_id:
            return merchant
    raise SystemExit(f"no merchant with mch_id {mch_id!r} in the config")


def default_url(config: Config) -> str:
    host = config.server.host
    wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}  # noqa: S104
    host = wildcard.get(host, host)
    return f"http://{host}:{config.server.port}{config.server.callback_path}"


async def run_simulation(
    merchant: MerchantConfig,
    url: str,
    *,
    count: int,
    concurrency: int,
    duplicate: bool,
    tampered: bool,
    report: Callable[[Outcome], None],
) -> list[Outcome]:
    notifier = Notifier(merchant)
    limit = asyncio.Semaphore(concurrency)
    outcomes: list[Outcome] = []

    async def send(session: aiohttp.ClientSession, transaction_id: str, sent: str,
                   fields: dict[str, Any]) -> None:
        async with limit:
            try:
                async with session.post(url, data=msgspec.json.encode(fields),
                                        headers=JSON) as response:
                    reply = msgspec.json.decode(await response.read(), type=Reply)
                errcode, errmsg = reply.errcode, reply.errmsg
            except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
                errcode, errmsg = -1, f"no reply: {exc!r}"
        wanted = ErrCode.INVALID_SIGNATURE if sent == "tampered" else ErrCode.OK
        outcome = Outcome(transaction_id, sent, errcode, errmsg, errcode == wanted)
        outcomes.append(outcome)
        report(outcome)

    # aiohttp rather than httpx: an eighth of the CPU a request or less, flat in the pool's size
    # (docs/decisions/http-client.md); a load test should measure the router, not itself.
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    async with (aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session,
                asyncio.TaskGroup() as group):
        for _ in range(count):
            transaction_id = new_transaction_id()
            payload = msgspec.json.encode(sample_payload(transaction_id))
            fields = notifier.signed(notifier.envelope(payload))
            group.create_task(send(session, transaction_id, "original", fields))
            if duplicate:  # a retry as WeChat may send it: same payment, new nonce and IV
                again = notifier.signed(notifier.envelope(payload))
                group.create_task(send(session, transaction_id, "duplicate", again))
            if tampered:
                group.create_task(send(session, transaction_id, "tampered", tamper(fields)))
    return outcomes


def print_summary(outcomes: list[Outcome]) -> None:
    by_code: dict[int, int] = {}
    for outcome in outcomes:
        by_code[outcome.errcode] = by_code.get(outcome.errcode, 0) + 1
    codes = ", ".join(f"errcode {code}: {n}" for code, n in sorted(by_code.items()))
    unexpected = sum(not o.expected for o in outcomes)
    print(f"sent {len(outcomes)}; {codes}; unexpected: {unexpected}", file=sys.stderr)
