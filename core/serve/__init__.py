"""``serve``: the HTTP process (``app``, ``server``), and the engine beside it.

``engine_parent`` is the engine as the HTTP process sees it (started, supervised, asked);
``engine_child`` is the engine's own process; ``ipc`` is the frames between the two.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["module_command", "run_loop"]

T = TypeVar("T")


def module_command(module: str, *args: str) -> list[str]:
    """The command that runs one of this package's modules in a new interpreter.

    ``-P`` keeps the working directory off ``sys.path``: a folder there named like one of
    ours (or like anything we import) must never be imported in its place.
    """
    return [sys.executable, "-P", "-m", module, *args]


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed (not on Windows), as the engine and the
    workers both do: their plugins' calls cost the loop less there."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
