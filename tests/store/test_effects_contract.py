"""The store contract for effects (``Delivery.once``): begun, committed before the effect;
done after it; gone when it did not happen. Every backend must pass it (the ``store``
fixture lists them)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arrears_router.store import Store
from arrears_router.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

KEY = "1900000109:4200000000000000000000000001:sms"


async def test_the_first_begin_records_it_begun_and_says_there_was_nothing(
    store: Store,
) -> None:
    before = datetime.now(UTC)
    assert await store.effect(KEY) is None
    assert await store.begin_effect(KEY) is None
    record = await store.effect(KEY)
    assert record is not None
    assert (record.idempotency_key, record.done_at) == (KEY, None)
    assert before <= record.begun_at <= datetime.now(UTC)


async def test_a_second_begin_gets_the_first_record_and_changes_nothing(store: Store) -> None:
    await store.begin_effect(KEY)
    first = await store.effect(KEY)
    assert await store.begin_effect(KEY) == first  # begun, never done: of unknown outcome
    assert await store.effect(KEY) == first


async def test_done_is_told_to_every_later_begin(store: Store) -> None:
    await store.begin_effect(KEY)
    await store.end_effect(KEY, done=True)
    record = await store.effect(KEY)
    assert record is not None and record.done_at is not None
    assert record.begun_at <= record.done_at
    assert await store.begin_effect(KEY) == record


async def test_nothing_done_forgets_it_so_the_next_begin_is_a_first(store: Store) -> None:
    await store.begin_effect(KEY)
    await store.end_effect(KEY, done=False)
    assert await store.effect(KEY) is None
    assert await store.begin_effect(KEY) is None


async def test_a_done_effect_stays_done(store: Store) -> None:
    await store.begin_effect(KEY)
    await store.end_effect(KEY, done=True)
    done = await store.effect(KEY)
    await store.end_effect(KEY, done=False)  # a late, stale attempt's word
    await store.end_effect(KEY, done=True)
    assert await store.effect(KEY) == done


async def test_ending_an_effect_never_begun_records_nothing(store: Store) -> None:
    await store.end_effect(KEY, done=True)
    await store.end_effect(KEY, done=False)
    assert await store.effect(KEY) is None


async def test_keys_are_apart(store: Store) -> None:
    other = KEY.replace(":sms", ":webhook")
    await store.begin_effect(KEY)
    await store.end_effect(KEY, done=True)
    assert await store.begin_effect(other) is None
    record = await store.effect(other)
    assert record is not None and record.done_at is None


async def test_of_concurrent_begins_exactly_one_begins(store: Store) -> None:
    earlier = await asyncio.gather(*(store.begin_effect(KEY) for _ in range(20)))
    assert earlier.count(None) == 1
    assert len({record for record in earlier if record is not None}) == 1


# -- SQLite: committed before begin_effect returns


async def test_a_begun_effect_is_in_the_file_before_begin_returns(tmp_path: Path) -> None:
    """Seen by another connection while the writer is still open (nothing left to flush at
    close), and after a reopen."""
    path = str(tmp_path / "store.db")
    writer = SqliteStore(path)
    await writer.open()
    try:
        assert await writer.begin_effect(KEY) is None
        reader = SqliteStore(path, readonly=True)
        await reader.open()
        try:
            begun = await reader.effect(KEY)
        finally:
            await reader.close()
    finally:
        await writer.close()
    assert begun is not None and begun.done_at is None
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.effect(KEY) == begun
    finally:
        await reopened.close()
