"""Logging for every process the router runs: one format, to standard error."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]

# A line per outgoing request or per file event would drown what matters.
_CHATTY = ("httpx", "httpcore", "watchfiles")


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING)
