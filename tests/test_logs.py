"""``arrears_router.logs``: the two formats, the context keys, and redaction on the handler."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from arrears_router import logs
from arrears_router.config import parse_config
from arrears_router.logs import (
    build_handler,
    configure_logging,
    log_context,
    redact,
    redact_secrets,
    secrets_in,
)
from arrears_router.platform.runtime import Router
from arrears_router.platform.threads import PluginThreads
from tests.test_config import MERCHANT

SIGN_KEY = "unitSignKeyQWERTYzxcvbnmPOIUasdfg"


@pytest.fixture(autouse=True)
def no_secrets_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets to mask are the process's: each test here starts with none, whatever an
    earlier test's router registered (a config's rider phones are secrets too)."""
    monkeypatch.setattr(logs, "_secrets", set())
    monkeypatch.setattr(logs, "_secret_pattern", None)


def use(format: Any, level: Any = "info") -> tuple[logging.Logger, io.StringIO]:
    """A logger outside the logging tree (pytest's handlers never see it), with only the
    router's handler, and what it writes."""
    stream = io.StringIO()
    logger = logging.Logger("tests.logs", logging.DEBUG)
    logger.addHandler(build_handler(format, level, stream))
    return logger, stream


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- formats and keys


def test_json_is_one_object_a_line_with_the_context_keys() -> None:
    logger, stream = use("json")
    with log_context(plugin="sms", delivery_id=7, attempt=1):
        logger.info("sent\nin two lines", extra={"attempt": 2, "duration_s": 0.1234567,
                                                 "colour": "not a stable key"})
    logger.info("after")

    first, after = json_lines(stream)
    assert datetime.fromisoformat(first.pop("time")).utcoffset() is not None
    assert first == {"level": "info", "logger": "tests.logs", "message": "sent\nin two lines",
                     "pid": first["pid"], "plugin": "sms", "delivery_id": 7,
                     "attempt": 2, "duration_s": 0.123457}  # extra= wins over the context
    assert "plugin" not in after  # the context ended with its block


def test_text_keeps_its_layout_and_adds_the_keys_before_a_traceback() -> None:
    logger, stream = use("text")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed", extra={"errcode": 50001, "request_id": "ab12"})

    first, *rest = stream.getvalue().splitlines()
    assert first.endswith(" ERROR tests.logs failed [request_id=ab12 errcode=50001]")
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "RuntimeError: boom"


def test_the_level_is_the_handlers() -> None:
    logger, stream = use("json", "warning")
    logger.info("not shown")
    logger.warning("shown")
    assert [line["message"] for line in json_lines(stream)] == ["shown"]


@pytest.mark.anyio
async def test_the_context_reaches_tasks_and_a_sync_plugins_threads() -> None:
    logger, stream = use("json")
    threads = PluginThreads("sync", 1)
    with log_context(delivery_id=3):
        await asyncio.create_task(asyncio.sleep(0, logger.info("in a task")))
        await threads.run(logger.info, "on its thread")
    threads.shutdown()
    assert [(line["message"], line["delivery_id"]) for line in json_lines(stream)] == [
        ("in a task", 3), ("on its thread", 3)]


# -- redaction


def test_secrets_phones_openids_and_url_credentials_are_masked() -> None:
    redact_secrets([SIGN_KEY, "short"])
    text = (f"key {SIGN_KEY}, {SIGN_KEY[:-1]}; short; rider oRider0000000000000000000001 at"
            " 13800000000, +8613800000000, +86 138 0000 0000, 138-0000-0000;"
            " postgresql://router:hunter22@db/arrears?sslmode=require&password=p4ss"
            " https://api.example/send?access_token=abc&to=x;"
            " transaction 4200000000202611250000000001, fee 300")
    assert redact(text) == (
        f"key ****, {SIGN_KEY[:-1]}; short; rider oRid****0001 at"
        " 138****0000, +86138****0000, +86138****0000, 138****0000;"
        " postgresql://router:****@db/arrears?sslmode=require&password=****"
        " https://api.example/send?access_token=****&to=x;"
        " transaction 4200000000202611250000000001, fee 300")


def test_secrets_in_a_config_are_its_keys_tokens_and_phones() -> None:
    config = parse_config(f"""
[store]
url = "sqlite:///a.db"
{MERCHANT.replace('"k"', f'"{SIGN_KEY}"')}
[[merchants.previous_keys]]
sign_key = "unitOldSignKey0123456789abcdefAB"
aes_key = "base64:AAECAwQFBgcICQoLDA0ODw=="
[plugins.unlock]
url = "http://127.0.0.1:9/unblock"
headers = {{ Authorization = "Bearer unit-bearer-token", Accept = "application/json" }}
[plugins.sms]
phones = {{ "rider-0001" = "+85291234567" }}
[plugins.sms.provider]
type = "http"
url = "http://127.0.0.1:9/sms"
secret_key = "unit-provider-secret"
""", Path("/srv"))
    assert secrets_in(config) == {
        SIGN_KEY, "0123456789abcdef", "unitOldSignKey0123456789abcdefAB",
        "base64:AAECAwQFBgcICQoLDA0ODw==", "AAECAwQFBgcICQoLDA0ODw==",
        "Bearer unit-bearer-token", "unit-bearer-token", "+85291234567",
        "unit-provider-secret",
    }


def test_the_handler_masks_every_loggers_records_and_their_tracebacks() -> None:
    logger, stream = use("json")
    redact_secrets([SIGN_KEY])
    try:
        raise ValueError(f"bad key {SIGN_KEY} for oRider0000000000000000000001")
    except ValueError:
        logger.exception("rider %s, phone %s", "oRider0000000000000000000001", "13800000000",
                         extra={"transaction_id": "TX-13800000000"}, stack_info=True)
    logger.info("%d placeholders, one argument %s", 1)  # malformed: logged, never raised

    line, malformed = json_lines(stream)
    assert line["message"] == "rider oRid****0001, phone 138****0000"
    assert line["exception"].endswith("ValueError: bad key **** for oRid****0001")
    assert line["transaction_id"] == "TX-138****0000" and "stack" in line
    assert malformed["message"] == "'%d placeholders, one argument %s' (1,)"


@pytest.mark.anyio
async def test_a_reload_masks_the_new_keys_and_still_the_old(tmp_path: Path) -> None:
    old, new = "unitKeyBeforeTheRotation01234567", "unitKeyAfterTheRotation012345678"
    before = parse_config(f'[store]\nurl = "sqlite:///a.db"\n{MERCHANT}'.replace(
        '"k"', f'"{old}"'), tmp_path)
    router = Router(before, dispatch=False)
    assert redact(old) == "****"
    rotated = msgspec.structs.replace(before.merchants[0], sign_key=new)
    await router.reload(msgspec.structs.replace(before, merchants=(rotated,)))
    assert (redact(old), redact(new)) == ("****", "****")


def test_configuring_leaves_a_root_logger_configured_by_another_alone() -> None:
    root = logging.getLogger()
    assert root.handlers  # pytest's own
    before = list(root.handlers)
    configure_logging("json", "debug")
    assert root.handlers == before
