"""A config edit the running router cannot take up is named, not reported as applied."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from arrears_router.config import parse_config
from arrears_router.platform.runtime import Router
from tests.test_config import MERCHANT


@pytest.mark.anyio
async def test_an_edit_to_the_listener_or_store_is_named_as_needing_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = parse_config(f'[store]\nurl = "sqlite:///a.db"\n{MERCHANT}', tmp_path)
    after = parse_config(
        f'[server]\nport = 9999\n[store]\nurl = "sqlite:///b.db"\n{MERCHANT}'
        .replace('"m1"', '"m2"'), tmp_path)
    router = Router(before, dispatch=False)
    with caplog.at_level(logging.INFO, logger="arrears_router.runtime"):
        await router.reload(after)
    assert "config reloaded, except what needs a restart: server.port, store.url" in caplog.text
    assert router.config.server.port == before.server.port  # what still runs
    assert router.config.store.url == before.store.url
    assert router.intake.merchants.find("wx1", "m2") is not None  # merchants did apply
