"""An example third-party plugin: one JSON receipt file per payment, written once, and a
command, ``arrears-router receipts DIRECTORY``, that lists them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec

from arrears_router import ArrearsPayment, Commands, Delivery, hookimpl


class ReceiptLog:
    name = "receipt_log"

    class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
        directory: str
        """Where the receipts go; created at start-up."""

    def __init__(self, settings: Settings) -> None:
        self.directory = Path(settings.directory)

    @hookimpl
    def router_started(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    @hookimpl
    def arrears_paid(self, payment: ArrearsPayment, delivery: Delivery) -> str:
        # Named by the idempotency key and created exclusively: a second delivery of the
        # same payment finds the file and changes nothing.
        receipt = self.directory / f"{delivery.idempotency_key.replace(':', '_')}.json"
        try:
            with receipt.open("x", encoding="utf-8") as file:
                json.dump({"transaction_id": payment.transaction_id,
                           "yuan": f"{payment.total_fee / 100:.2f}"}, file)
        except FileExistsError:
            return "already written"
        return f"wrote {receipt.name}"


@hookimpl
def register_commands(commands: Commands) -> None:
    receipts = commands.add("receipts", "the receipts written to DIRECTORY",
                            list_receipts, json=True)
    receipts.add_argument("directory", type=Path)


def list_receipts(args: argparse.Namespace) -> None:
    for receipt in sorted(args.directory.glob("*.json")):
        fields = json.loads(receipt.read_text(encoding="utf-8"))
        print(json.dumps(fields) if args.json
              else f"{fields['transaction_id']}  {fields['yuan']} yuan")
