"""The store contract for plugins, their modes and deliveries: every backend must pass it.

Only the public :class:`core.store.Store` methods are used, never a backend's SQL, so the
suite runs unchanged against every backend the ``store`` fixture lists.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import pytest

from arrears_router.payment import ArrearsPayment
from arrears_router.store import (
    Accepted,
    ClaimedDelivery,
    ClaimLimit,
    DeliveryResult,
    DeliveryStatus,
    Mode,
    PluginRoute,
    PluginState,
    Store,
    StoreError,
)
from tests.store.records import event, payment

pytestmark = pytest.mark.anyio

LONG = 60.0
"""A lease no test outlives."""
TINY = 0.05
"""A lease a test waits out: just past it, the lease has lapsed."""
PAST_TINY = 0.1


def want(*plugins: str, limit: int = 10, lease: float = LONG) -> dict[str, ClaimLimit]:
    return dict.fromkeys(plugins, ClaimLimit(limit, lease))


async def configure(store: Store, *routes: PluginRoute) -> None:
    await store.sync_plugins(routes)


async def accept(store: Store, *transaction_ids: str) -> list[ArrearsPayment]:
    payments = [payment(t) for t in transaction_ids]
    for p in payments:
        assert await store.accept(event(p)) is Accepted.STORED
    return payments


def done(d: ClaimedDelivery, note: str = "") -> DeliveryResult:
    return DeliveryResult(id=d.id, token=d.token, status=DeliveryStatus.DONE, note=note)


def dead(d: ClaimedDelivery, error: str = "refused") -> DeliveryResult:
    return DeliveryResult(id=d.id, token=d.token, status=DeliveryStatus.DEAD, error=error)


def retry(d: ClaimedDelivery, retry_in: float, error: str = "busy") -> DeliveryResult:
    return DeliveryResult(id=d.id, token=d.token, status=DeliveryStatus.PENDING,
                          retry_in=retry_in, error=error)


def seen(claimed: Sequence[ClaimedDelivery]) -> list[tuple[str, str]]:
    """Who got which payment, in the order claimed."""
    return [(d.plugin, d.payment.transaction_id) for d in claimed]


def state(states: Sequence[PluginState], name: str) -> PluginState:
    [found] = [s for s in states if s.name == name]
    return found


# -- sync_plugins and accept: the fan-out


async def test_accept_makes_one_delivery_per_enabled_or_paused_plugin(store: Store) -> None:
    await configure(store, PluginRoute("on", Mode.ENABLED), PluginRoute("held", Mode.PAUSED),
                    PluginRoute("off", Mode.DISABLED))
    await accept(store, "T1")
    records = await store.deliveries()
    assert sorted((r.plugin, r.transaction_id, r.mch_id) for r in records) == [
        ("held", "T1", "m1"), ("on", "T1", "m1"),
    ]
    assert {r.status for r in records} == {DeliveryStatus.PENDING}
    assert {r.attempt for r in records} == {0}
    assert {r.replays for r in records} == {0}
    [stored] = await store.events()
    assert {r.event_id for r in records} == {stored.id}
    assert await store.deliveries(plugin="off") == []


async def test_a_duplicate_makes_no_more_deliveries(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    assert await store.accept(event(payment("T1"), b"again")) is Accepted.DUPLICATE
    assert len(await store.deliveries()) == 1


async def test_a_plugin_dropped_from_the_config_gets_no_new_deliveries(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, "T1")
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T2")
    assert sorted((r.plugin, r.transaction_id) for r in await store.deliveries()) == [
        ("a", "T1"), ("a", "T2"), ("b", "T1"),
    ]
    assert state(await store.plugin_states(), "b").configured is False


async def test_deliveries_list_newest_first_filtered_and_limited(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, "T1", "T2", "T3")
    records = await store.deliveries(plugin="a", limit=2)
    assert [(r.plugin, r.transaction_id) for r in records] == [("a", "T3"), ("a", "T2")]
    all_ids = [r.id for r in await store.deliveries()]
    assert all_ids == sorted(all_ids, reverse=True)
    assert len(all_ids) == 6
    record = await store.delivery(records[0].id)
    assert record == records[0]
    assert await store.delivery(max(all_ids) + 1000) is None


async def test_a_payments_deliveries_oldest_first_at_every_merchant(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.PAUSED))
    await accept(store, "T1", "T2")
    assert await store.accept(event(payment("T1", mch_id="m2"))) is Accepted.STORED
    [claimed] = await store.claim(want("a", limit=1))  # T1 at m1, the oldest
    assert await store.finish([retry(claimed, LONG)]) == [True]

    found = await store.deliveries_by_transaction("T1")
    assert [(r.transaction_id, r.mch_id, r.plugin) for r in found] == [
        ("T1", "m1", "a"), ("T1", "m1", "b"), ("T1", "m2", "a"), ("T1", "m2", "b")]
    assert [r.id for r in found] == sorted(r.id for r in found)
    # The same records the listing gives, the retry's next attempt time included.
    listed = {r.id: r for r in await store.deliveries()}
    assert found == [listed[r.id] for r in found]
    assert found[0].next_at > found[1].next_at
    assert await store.deliveries_by_transaction("T404") == []


# -- claim


async def test_claim_takes_each_plugins_oldest_deliveries_up_to_its_limit_in_one_call(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, "T1", "T2", "T3")
    first = await store.claim({"a": ClaimLimit(2, LONG), "b": ClaimLimit(1, LONG)})
    assert sorted(seen(first)) == [("a", "T1"), ("a", "T2"), ("b", "T1")]
    assert {d.attempt for d in first} == {1}
    second = await store.claim(want("a", "b", limit=1))
    assert sorted(seen(second)) == [("a", "T3"), ("b", "T2")]
    assert seen(await store.claim(want("a", "b"))) == [("b", "T3")]


async def test_claim_takes_nothing_of_a_plugin_not_enabled(store: Store) -> None:
    await configure(store, PluginRoute("on", Mode.ENABLED), PluginRoute("held", Mode.PAUSED),
                    PluginRoute("off", Mode.DISABLED))
    await accept(store, "T1")
    claimed = await store.claim(want("on", "held", "off", "unknown"))
    assert seen(claimed) == [("on", "T1")]
    [held] = await store.deliveries(plugin="held")
    assert (held.status, held.attempt) == (DeliveryStatus.PENDING, 0)


async def test_claim_of_nothing_due_is_empty(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    assert await store.claim(want("a")) == []
    assert await store.claim({}) == []


async def test_deliveries_of_one_payment_share_one_payment(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    [p] = await accept(store, "T1")
    one, other = await store.claim(want("a", "b"))
    assert {one.plugin, other.plugin} == {"a", "b"}
    assert one.id != other.id
    assert one.payment == p
    assert one.payment is other.payment


async def test_a_leased_delivery_is_not_claimed_again(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [claimed] = await store.claim(want("a"))
    assert claimed.attempt == 1
    assert await store.claim(want("a")) == []
    record = await store.delivery(claimed.id)
    assert record is not None
    assert (record.status, record.attempt) == (DeliveryStatus.PENDING, 1)


async def test_a_lapsed_lease_makes_the_delivery_due_again_as_its_next_attempt(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [first] = await store.claim(want("a", lease=TINY))
    await asyncio.sleep(PAST_TINY)  # the lease lapsing is the event under test
    [again] = await store.claim(want("a"))
    assert again.id == first.id
    assert again.attempt == 2
    assert again.token != first.token
    assert await store.claim(want("a")) == []


async def test_a_plugin_runs_after_another_only_once_that_one_is_done(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED),
                    PluginRoute("b", Mode.ENABLED, after=("a",)))
    await accept(store, "T1", "T2")
    claimed = await store.claim({"a": ClaimLimit(1, LONG), "b": ClaimLimit(10, LONG)})
    assert seen(claimed) == [("a", "T1")]
    assert await store.claim(want("b")) == []  # a's delivery is leased, not done
    assert await store.finish([done(claimed[0])]) == [True]
    # Released per payment: a is done with T1 only.
    assert seen(await store.claim(want("b"))) == [("b", "T1")]


async def test_a_retry_of_the_plugin_run_after_still_holds_the_next(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED),
                    PluginRoute("b", Mode.ENABLED, after=("a",)))
    await accept(store, "T1")
    [a] = await store.claim(want("a"))
    assert await store.finish([retry(a, LONG)]) == [True]
    assert await store.claim(want("b")) == []


async def test_a_dead_delivery_holds_the_plugins_run_after_it(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED),
                    PluginRoute("b", Mode.ENABLED, after=("a",)))
    await accept(store, "T1")
    [a] = await store.claim(want("a", "b"))
    assert await store.finish([dead(a)]) == [True]
    assert await store.claim(want("a", "b")) == []
    [b] = await store.deliveries(plugin="b")
    assert (b.status, b.attempt) == (DeliveryStatus.PENDING, 0)
    # Replayed and done at last, a releases b.
    assert await store.replay(delivery_id=a.id) == 1
    [a_again] = await store.claim(want("a"))
    assert await store.finish([done(a_again)]) == [True]
    assert seen(await store.claim(want("b"))) == [("b", "T1")]


# -- finish


async def test_a_done_delivery_is_recorded_and_never_claimed_again(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [claimed] = await store.claim(want("a", lease=TINY))
    assert await store.finish([done(claimed, note="ok #7")]) == [True]
    record = await store.delivery(claimed.id)
    assert record is not None
    assert (record.status, record.attempt, record.note) == (DeliveryStatus.DONE, 1, "ok #7")
    await asyncio.sleep(PAST_TINY)  # not even once its old lease would have lapsed
    assert await store.claim(want("a")) == []


async def test_a_retry_waits_for_its_time(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [claimed] = await store.claim(want("a"))
    assert await store.finish([retry(claimed, LONG * 10, error="503")]) == [True]
    record = await store.delivery(claimed.id)
    assert record is not None
    assert (record.status, record.attempt, record.last_error) == (
        DeliveryStatus.PENDING, 1, "503")
    assert (record.next_at - record.updated_at).total_seconds() > LONG * 5
    assert await store.claim(want("a")) == []


async def test_a_retry_due_at_once_is_claimed_as_the_next_attempt(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [first] = await store.claim(want("a"))
    assert await store.finish([retry(first, 0.0)]) == [True]
    [again] = await store.claim(want("a"))
    assert (again.id, again.attempt) == (first.id, 2)


async def test_a_dead_delivery_is_recorded_and_not_claimed(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [claimed] = await store.claim(want("a"))
    assert await store.finish([dead(claimed, error="400 bad request")]) == [True]
    record = await store.delivery(claimed.id)
    assert record is not None
    assert (record.status, record.attempt, record.last_error) == (
        DeliveryStatus.DEAD, 1, "400 bad request")
    assert await store.claim(want("a")) == []


async def test_a_result_under_a_lapsed_and_retaken_claim_is_refused(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [stale] = await store.claim(want("a", lease=TINY))
    await asyncio.sleep(PAST_TINY)  # the lease lapsing is the event under test
    [current] = await store.claim(want("a"))
    assert await store.finish([dead(stale, error="late")]) == [False]
    record = await store.delivery(current.id)
    assert record is not None
    assert (record.status, record.attempt, record.last_error) == (DeliveryStatus.PENDING, 2, "")
    assert await store.claim(want("a")) == []  # the current claim still holds
    assert await store.finish([done(current)]) == [True]
    record = await store.delivery(current.id)
    assert record is not None
    assert record.status is DeliveryStatus.DONE


async def test_several_results_in_one_call_get_one_answer_each_in_order(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1", "T2", "T3")
    [stale] = await store.claim(want("a", limit=1, lease=TINY))
    await asyncio.sleep(PAST_TINY)  # the lease lapsing is the event under test
    by_tx = {d.payment.transaction_id: d for d in await store.claim(want("a"))}
    assert sorted(by_tx) == ["T1", "T2", "T3"]
    answers = await store.finish([
        done(by_tx["T2"]), dead(stale), retry(by_tx["T3"], LONG), dead(by_tx["T1"]),
    ])
    assert answers == [True, False, True, True]
    statuses = {r.transaction_id: r.status for r in await store.deliveries()}
    assert statuses == {"T1": DeliveryStatus.DEAD, "T2": DeliveryStatus.DONE,
                        "T3": DeliveryStatus.PENDING}


# -- modes


async def test_a_paused_plugin_is_held_and_enabling_releases_it_in_order(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.PAUSED))
    await accept(store, "T1", "T2")
    assert await store.claim(want("a")) == []
    assert await store.set_mode("a", Mode.ENABLED, "ops") is Mode.PAUSED
    assert seen(await store.claim(want("a", limit=1))) == [("a", "T1")]
    assert seen(await store.claim(want("a", limit=1))) == [("a", "T2")]


async def test_pausing_holds_deliveries_already_made(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    assert await store.set_mode("a", Mode.PAUSED, "ops") is Mode.ENABLED
    await accept(store, "T2")  # still made while paused
    assert await store.claim(want("a")) == []
    assert len(await store.deliveries(plugin="a")) == 2


async def test_disabling_makes_no_new_deliveries_and_holds_those_made(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    assert await store.set_mode("a", Mode.DISABLED, "ops") is Mode.ENABLED
    await accept(store, "T2")
    assert [r.transaction_id for r in await store.deliveries(plugin="a")] == ["T1"]
    assert await store.claim(want("a")) == []
    await store.set_mode("a", Mode.ENABLED, "ops")
    assert seen(await store.claim(want("a"))) == [("a", "T1")]


async def test_mode_changes_are_audited_newest_first(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await store.set_mode("a", Mode.PAUSED, "alice")
    await store.set_mode("a", Mode.ENABLED, "bob")
    changes = await store.mode_changes()
    assert [(c.plugin, c.from_mode, c.to_mode, c.actor) for c in changes] == [
        ("a", Mode.PAUSED, Mode.ENABLED, "bob"),
        ("a", Mode.ENABLED, Mode.PAUSED, "alice"),
        ("a", None, Mode.ENABLED, "config"),
    ]
    assert changes[0].at >= changes[1].at >= changes[2].at
    assert changes[0].at.utcoffset() is not None
    assert [c.actor for c in await store.mode_changes(limit=1)] == ["bob"]


async def test_the_mode_of_an_unconfigured_plugin_cannot_be_set(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await configure(store, PluginRoute("a", Mode.ENABLED))
    with pytest.raises(StoreError):
        await store.set_mode("nobody", Mode.PAUSED, "ops")
    with pytest.raises(StoreError):
        await store.set_mode("b", Mode.PAUSED, "ops")
    assert [c.actor for c in await store.mode_changes()] == ["config", "config"]


async def test_an_operators_mode_stands_until_the_config_changes_it(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await store.set_mode("a", Mode.PAUSED, "ops")
    await configure(store, PluginRoute("a", Mode.ENABLED))  # the same config, reloaded
    assert state(await store.plugin_states(), "a").mode is Mode.PAUSED
    await configure(store, PluginRoute("a", Mode.DISABLED))  # the config file changed
    assert state(await store.plugin_states(), "a").mode is Mode.DISABLED
    [latest, *_] = await store.mode_changes()
    assert (latest.from_mode, latest.to_mode, latest.actor) == (
        Mode.PAUSED, Mode.DISABLED, "config")


# -- replay


async def test_replaying_one_delivery_makes_it_due_with_a_fresh_count(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1", "T2")
    claimed = {d.payment.transaction_id: d for d in await store.claim(want("a"))}
    assert await store.finish([dead(claimed["T1"]), done(claimed["T2"])]) == [True, True]
    for d in claimed.values():
        assert await store.replay(delivery_id=d.id) == 1
        record = await store.delivery(d.id)
        assert record is not None
        assert (record.status, record.replays) == (DeliveryStatus.PENDING, 1)
    again = await store.claim(want("a"))
    assert sorted(seen(again)) == [("a", "T1"), ("a", "T2")]
    assert {d.attempt for d in again} == {1}


async def test_replaying_a_pending_delivery_changes_nothing(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    [claimed] = await store.claim(want("a"))
    assert await store.replay(delivery_id=claimed.id) == 0
    assert await store.claim(want("a")) == []  # its claim still holds
    assert await store.finish([done(claimed)]) == [True]


async def test_replaying_a_plugin_revives_its_dead_deliveries_only(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, "T1", "T2", "T3")
    claimed = {(d.plugin, d.payment.transaction_id): d
               for d in await store.claim(want("a", "b"))}
    await store.finish([
        dead(claimed["a", "T1"]), done(claimed["a", "T2"]), dead(claimed["a", "T3"]),
        dead(claimed["b", "T1"]), done(claimed["b", "T2"]), done(claimed["b", "T3"]),
    ])
    assert await store.replay(plugin="a") == 2
    again = await store.claim(want("a", "b"))
    assert sorted(seen(again)) == [("a", "T1"), ("a", "T3")]
    assert {d.attempt for d in again} == {1}
    [b_dead] = await store.deliveries(plugin="b", status=DeliveryStatus.DEAD)
    assert b_dead.transaction_id == "T1"
    [a_done] = await store.deliveries(plugin="a", status=DeliveryStatus.DONE)
    assert (a_done.transaction_id, a_done.replays) == ("T2", 0)


# -- plugin states


async def test_plugin_states_count_deliveries_by_status(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.PAUSED),
                    PluginRoute("c", Mode.DISABLED))
    await accept(store, "T1", "T2", "T3", "T4")
    claimed = {d.payment.transaction_id: d for d in await store.claim(want("a"))}
    await store.finish([done(claimed["T1"]), done(claimed["T2"]), dead(claimed["T3"])])
    states = sorted(await store.plugin_states(), key=lambda s: s.name)
    assert states[0].oldest_pending_at is not None and states[1].oldest_pending_at is not None
    states = [msgspec.structs.replace(s, oldest_pending_at=None) for s in states]
    assert states == [
        PluginState(name="a", mode=Mode.ENABLED, configured=True, pending=1, done=2, dead=1),
        PluginState(name="b", mode=Mode.PAUSED, configured=True, pending=4, done=0, dead=0),
        PluginState(name="c", mode=Mode.DISABLED, configured=True, pending=0, done=0, dead=0),
    ]


# -- accept_and_claim: deliveries claimed at birth


def leases(*plugins: str, lease: float = LONG) -> dict[str, float]:
    return dict.fromkeys(plugins, lease)


async def test_accepting_claims_only_the_named_enabled_plugins_that_run_after_none(
    store: Store,
) -> None:
    await configure(store, PluginRoute("on", Mode.ENABLED), PluginRoute("held", Mode.PAUSED),
                    PluginRoute("off", Mode.DISABLED), PluginRoute("unnamed", Mode.ENABLED),
                    PluginRoute("next", Mode.ENABLED, after=("on",)))
    accepted, claimed = await store.accept_and_claim(
        event(payment("T1")), leases("on", "held", "off", "next", "unknown"))
    assert accepted is Accepted.STORED
    assert seen(claimed) == [("on", "T1")]
    # The others are still made, as accept() makes them: pending, not yet attempted.
    assert sorted((r.plugin, r.status, r.attempt) for r in await store.deliveries()) == [
        ("held", DeliveryStatus.PENDING, 0), ("next", DeliveryStatus.PENDING, 0),
        ("on", DeliveryStatus.PENDING, 1), ("unnamed", DeliveryStatus.PENDING, 0),
    ]
    pending = {s.name: s.pending for s in await store.plugin_states()}
    assert pending == {"on": 1, "held": 1, "off": 0, "unnamed": 1, "next": 1}


async def test_a_birth_claim_is_a_first_attempt_under_one_token_with_the_events_payment(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    new = event(payment("T1"))
    _, claimed = await store.accept_and_claim(new, leases("a", "b"))
    assert sorted(seen(claimed)) == [("a", "T1"), ("b", "T1")]
    assert {d.attempt for d in claimed} == {1}
    assert len({d.token for d in claimed}) == 1
    assert all(d.payment is new.payment for d in claimed)
    assert len({d.id for d in claimed}) == 2
    for d in claimed:
        record = await store.delivery(d.id)
        assert record is not None
        assert (record.plugin, record.status, record.attempt) == (
            d.plugin, DeliveryStatus.PENDING, 1)


async def test_a_birth_claimed_delivery_is_not_claimed_again_while_leased(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await store.accept_and_claim(event(payment("T1")), leases("a", "b"))
    assert await store.claim(want("a", "b")) == []


async def test_a_lapsed_birth_claim_is_claimed_again_and_its_token_refused(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    _, [born] = await store.accept_and_claim(event(payment("T1")), leases("a", lease=TINY))
    await asyncio.sleep(PAST_TINY)  # the lease lapsing is the event under test
    [again] = await store.claim(want("a"))
    assert (again.id, again.attempt) == (born.id, 2)
    assert again.token != born.token
    assert await store.finish([done(born)]) == [False]
    record = await store.delivery(born.id)
    assert record is not None
    assert (record.status, record.attempt) == (DeliveryStatus.PENDING, 2)
    assert await store.finish([done(again)]) == [True]


async def test_a_birth_claimed_delivery_is_finished_like_any_claimed_one(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    _, [born] = await store.accept_and_claim(event(payment("T1")), leases("a"))
    assert await store.finish([done(born, note="ok")]) == [True]
    record = await store.delivery(born.id)
    assert record is not None
    assert (record.status, record.attempt, record.note) == (DeliveryStatus.DONE, 1, "ok")
    assert state(await store.plugin_states(), "a") == PluginState(
        name="a", mode=Mode.ENABLED, configured=True, pending=0, done=1, dead=0)


async def test_a_plugin_run_after_a_birth_claimed_one_waits_until_that_one_is_done(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED),
                    PluginRoute("b", Mode.ENABLED, after=("a",)))
    _, [born] = await store.accept_and_claim(event(payment("T1")), leases("a", "b"))
    assert born.plugin == "a"
    assert await store.claim(want("b")) == []  # a's delivery is leased, not done
    assert await store.finish([done(born)]) == [True]
    [b] = await store.claim(want("a", "b"))
    assert (b.plugin, b.attempt, b.payment.transaction_id) == ("b", 1, "T1")


async def test_a_duplicate_accepted_with_leases_claims_nothing(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    [p] = await accept(store, "T1")
    assert await store.accept_and_claim(event(p, b"again"), leases("a")) == (
        Accepted.DUPLICATE, [])
    assert seen(await store.claim(want("a"))) == [("a", "T1")]  # still the first's, unclaimed
    assert len(await store.deliveries()) == 1


async def test_a_conflict_accepted_with_leases_claims_nothing(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED))
    await accept(store, "T1")
    other = event(payment("T1", total_fee=1), b"other")
    assert await store.accept_and_claim(other, leases("a")) == (Accepted.CONFLICT, [])
    assert seen(await store.claim(want("a"))) == [("a", "T1")]  # still the first's, unclaimed
    assert len(await store.deliveries()) == 1
    assert len(await store.quarantined()) == 1


async def test_concurrent_copies_of_a_new_payment_claim_once_by_the_stored_copys_leases(
    store: Store,
) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    # Each order in turn, so whichever copy is stored, its own leases are told apart.
    orders = {"T1": [("a",), ("a", "b")], "T2": [("a", "b"), ("a",)],
              "T3": [("b",), ("a",), ("a", "b"), ()]}
    for transaction_id, copies in orders.items():
        p = payment(transaction_id)
        results = await asyncio.gather(*(
            store.accept_and_claim(event(p, f"copy {n}".encode()), leases(*named))
            for n, named in enumerate(copies)
        ))
        outcomes = [accepted for accepted, _ in results]
        assert sorted(outcomes) == sorted(
            [Accepted.STORED] + [Accepted.DUPLICATE] * (len(copies) - 1))
        [(named, claimed)] = [(named, claimed) for named, (accepted, claimed)
                              in zip(copies, results, strict=True)
                              if accepted is Accepted.STORED]
        assert sorted(seen(claimed)) == [(plugin, transaction_id) for plugin in named]
        assert all(not claimed for accepted, claimed in results
                   if accepted is Accepted.DUPLICATE)
    assert len(await store.deliveries()) == 2 * len(orders)


async def test_concurrent_payments_each_claim_their_own_deliveries(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    # Odd payments name b too: one batch's payments must not share their leases.
    named = {f"T{n}": ("a", "b") if n % 2 else ("a",) for n in range(50)}
    events = {t: event(payment(t)) for t in named}
    results = await asyncio.gather(*(
        store.accept_and_claim(events[t], leases(*named[t])) for t in named
    ))
    claimed = [d for _, ds in results for d in ds]
    assert len({d.id for d in claimed}) == len(claimed) == 75
    for t, (accepted, ds) in zip(named, results, strict=True):
        assert accepted is Accepted.STORED
        assert sorted(d.plugin for d in ds) == list(named[t])
        assert all(d.payment is events[t].payment for d in ds)
    records = {r.id: r for r in await store.deliveries(limit=1000)}
    assert len(records) == 100
    assert all(records[d.id].transaction_id == d.payment.transaction_id
               and records[d.id].plugin == d.plugin for d in claimed)
    unclaimed = await store.claim(want("a", "b", limit=100))
    assert sorted(seen(unclaimed)) == sorted(("b", t) for t in named if named[t] == ("a",))


async def test_accept_claims_nothing(store: Store) -> None:
    await configure(store, PluginRoute("a", Mode.ENABLED), PluginRoute("b", Mode.ENABLED))
    await accept(store, "T1", "T2")
    claimed = await store.claim(want("a", "b"))
    assert sorted(seen(claimed)) == [("a", "T1"), ("a", "T2"), ("b", "T1"), ("b", "T2")]
    assert {d.attempt for d in claimed} == {1}
