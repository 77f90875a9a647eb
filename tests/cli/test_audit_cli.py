"""Who did it, as the audit log keeps it: ``replay --by``, by default the user at this host
as ``plugins`` has it; and ``plugins history`` as it always read, from the general log."""

from __future__ import annotations

import asyncio
import getpass
import socket
from pathlib import Path

from arrears_router.store import (
    AuditAction,
    AuditEntry,
    ClaimLimit,
    DeliveryResult,
    DeliveryStatus,
    Mode,
    PluginRoute,
)
from arrears_router.store.sqlite import SqliteStore
from tests.harness import cli, cli_json, write_config
from tests.store.records import event, payment


async def dead_deliveries(path: Path, *transaction_ids: str) -> list[int]:
    """The ids of a delivery to ``a`` per payment, each dead."""
    store = SqliteStore(str(path))
    await store.open()
    await store.sync_plugins([PluginRoute("a", Mode.ENABLED)])
    for transaction_id in transaction_ids:
        await store.accept(event(payment(transaction_id)))
    claimed = await store.claim({"a": ClaimLimit(10, 60.0)})
    await store.finish([DeliveryResult(id=d.id, token=d.token, status=DeliveryStatus.DEAD,
                                       error="refused") for d in claimed])
    await store.close()
    return sorted(d.id for d in claimed)


async def audit_log(path: Path) -> list[AuditEntry]:
    store = SqliteStore(str(path), readonly=True)
    await store.open()
    try:
        return await store.audit()
    finally:
        await store.close()


def test_replay_is_audited_as_by_says_else_as_the_user_at_this_host(tmp_path: Path) -> None:
    first, _ = asyncio.run(dead_deliveries(tmp_path / "router.db", "T1", "T2"))
    config = write_config(tmp_path / "config.toml")
    replayed = cli("replay", "--delivery", str(first), "--by", "carol", config=config,
                   check=True)
    assert replayed.stdout == "1 delivery due again\n"
    assert cli("replay", "--plugin", "a", config=config, check=True).stdout == (
        "1 delivery due again\n")
    [by_default, by_carol, *_] = asyncio.run(audit_log(tmp_path / "router.db"))
    assert (by_carol.action, by_carol.target, by_carol.detail, by_carol.actor) == (
        AuditAction.REPLAY, f"delivery={first}", "1 replayed", "carol")
    assert (by_default.action, by_default.target, by_default.detail, by_default.actor) == (
        AuditAction.REPLAY, "plugin=a", "1 replayed",
        f"{getpass.getuser()}@{socket.gethostname()}")


def test_plugins_history_reads_the_mode_changes_as_before(tmp_path: Path) -> None:
    asyncio.run(dead_deliveries(tmp_path / "router.db"))
    config = write_config(tmp_path / "config.toml")
    cli("plugins", "pause", "a", "--by", "alice", config=config, check=True)
    cli("replay", "--plugin", "a", config=config, check=True)  # in the log, not a mode change
    history = cli("plugins", "history", config=config, check=True).stdout.splitlines()
    assert [line.split()[2:] for line in history] == [
        ["a", "enabled", "->", "paused", "by", "alice"],
        ["a", "-", "->", "enabled", "by", "config"],
    ]
    assert [{k: v for k, v in change.items() if k != "at"}
            for change in cli_json("plugins", "history", config=config)] == [
        {"id": 2, "plugin": "a", "from_mode": "enabled", "to_mode": "paused", "actor": "alice"},
        {"id": 1, "plugin": "a", "from_mode": None, "to_mode": "enabled", "actor": "config"},
    ]
