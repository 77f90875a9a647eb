"""The engine and every worker run their event loop on uvloop where it is installed."""

from __future__ import annotations

import asyncio

from arrears_router.serve import run_loop


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_the_loop_is_uvloops() -> None:
    assert run_loop(_loop_module()).startswith("uvloop")
