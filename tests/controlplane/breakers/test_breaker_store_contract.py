"""The breaker store contract, run against both stores: embedded (in memory) and a
real redis-server. Time is a manual clock: the embedded store's clock, and the
Redis scripts' injected ``now_ms``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from fusebox.agent.breaker import BreakerOverride, BreakerState, Counts, TransitionCause
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import BreakerQuorum, CircuitBreakerPolicy, TargetKind
from fusebox.controlplane.breakers import (
    BreakerNotFound,
    BreakerSnapshot,
    BreakerStore,
    BreakerTarget,
)
from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.breakers.redis import RedisBreakerStore
from tests.controlplane.breakers.breaker_cases import (
    ManualClock,
    batch,
    breaker_key,
    policy,
)

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


@dataclass
class Home:
    store: BreakerStore
    clock: ManualClock


@pytest.fixture(params=["embedded", "redis"])
async def home(request: pytest.FixtureRequest) -> AsyncIterator[Home]:
    clock = ManualClock()
    store: BreakerStore
    if request.param == "embedded":
        store = EmbeddedBreakerStore(clock=clock)
    else:
        store = RedisBreakerStore(request.getfixturevalue("redis_url"), clock=clock, partitions=4)
    await store.ping()
    yield Home(store, clock)
    await store.close()


async def trip_open(home: Home, cb_timeout: float = 30.0, max_requests: int = 1) -> None:
    cb = policy("consecutiveFailures >= 1", timeout=cb_timeout, max_requests=max_requests)
    await home.store.apply([batch((-1,), cb=cb)])


async def make_half_open(home: Home, max_requests: int = 1) -> None:
    await trip_open(home, cb_timeout=10.0, max_requests=max_requests)
    home.clock.advance(10.5)
    await home.store.advance()


def transitions(events: list) -> list[tuple[BreakerState, BreakerState]]:  # type: ignore[type-arg]
    return [(e.from_state, e.to_state) for e in events]


# -- closed: counting and tripping ---------------------------------------------------


async def test_trips_once_failures_summed_over_instances_reach_the_threshold(home: Home) -> None:
    first = await home.store.apply(
        [batch((-2,), instance="a"), batch((-2,), instance="b")]
    )
    assert first == []
    [event] = await home.store.apply([batch((-1, -3), instance="c")])
    assert (event.from_state, event.to_state, event.cause) == (CLOSED, OPEN, TransitionCause.TRIP)
    assert event.instance_id == "c"
    assert event.generation == 1
    assert event.open_until == pytest.approx(home.clock.now + 30.0)
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.state, snapshot.generation, snapshot.counts) == (OPEN, 1, Counts())
    assert snapshot.open_until == pytest.approx(home.clock.now + 30.0)


async def test_counts_every_outcome_in_order_while_closed(home: Home) -> None:
    await home.store.apply([batch((3, -2, 4, -1))])
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert snapshot.state is CLOSED
    assert snapshot.counts == Counts(10, 7, 3, 0, 1)


async def test_success_resets_the_consecutive_failures(home: Home) -> None:
    assert await home.store.apply([batch((-4, 1, -4))]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and snapshot.counts.consecutive_failures == 4


async def test_interval_window_resets_counts_without_a_new_generation(home: Home) -> None:
    cb = policy("totalFailures >= 3", interval=10.0)
    await home.store.apply([batch((-2,), cb=cb)])
    home.clock.advance(10.5)
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and snapshot.counts == Counts()
    assert await home.store.apply([batch((-2,), cb=cb)]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.state, snapshot.generation, snapshot.counts.total_failures) == (CLOSED, 0, 2)


async def test_a_changed_trip_replaces_the_policy_and_resets_counts(home: Home) -> None:
    await home.store.apply([batch((-4,))])
    stricter = policy("totalFailures >= 2")
    assert await home.store.apply([batch((-1,), cb=stricter)]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert snapshot.policy == stricter
    assert snapshot.counts.total_failures == 1


# -- open and half-open ---------------------------------------------------------------


async def test_outcomes_reported_while_open_are_dropped(home: Home) -> None:
    await trip_open(home)
    assert await home.store.apply([batch((5, -5))]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and (snapshot.state, snapshot.counts) == (OPEN, Counts())


async def test_advance_moves_open_to_half_open_only_after_the_timeout_has_passed(
    home: Home,
) -> None:
    await trip_open(home, cb_timeout=10.0)
    home.clock.advance(10.0)
    assert await home.store.advance() == []  # at the expiry, not after it
    home.clock.advance(0.25)
    [event] = await home.store.advance()
    assert (event.from_state, event.to_state, event.cause) == (
        OPEN, HALF_OPEN, TransitionCause.TIMEOUT
    )
    assert event.generation == 2
    assert await home.store.advance() == []


async def test_no_lease_while_closed_or_open(home: Home) -> None:
    cb = policy(timeout=10.0)
    grant = await home.store.acquire_lease(breaker_key(), cb, "a", 5.0)
    assert (grant.granted, grant.state) == (False, CLOSED)
    await trip_open(home, cb_timeout=10.0)
    grant = await home.store.acquire_lease(breaker_key(), cb, "a", 5.0)
    assert (grant.granted, grant.state, grant.generation) == (False, OPEN, 1)


async def test_at_most_max_requests_leases_are_granted_in_half_open(home: Home) -> None:
    await make_half_open(home, max_requests=2)
    cb = policy(max_requests=2)
    grants = [await home.store.acquire_lease(breaker_key(), cb, f"i{n}", 5.0) for n in range(4)]
    assert [g.granted for g in grants] == [True, True, False, False]
    assert grants[0].lease_id != grants[1].lease_id
    assert all(g.state is HALF_OPEN and g.generation == 2 for g in grants)
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and snapshot.active_leases == 2


async def test_an_expired_lease_frees_its_slot_and_its_report_is_ignored(home: Home) -> None:
    await make_half_open(home)
    first = await home.store.acquire_lease(breaker_key(), policy(), "a", 1.0)
    assert first.granted
    assert not (await home.store.acquire_lease(breaker_key(), policy(), "b", 1.0)).granted
    home.clock.advance(1.5)
    await home.store.advance()
    second = await home.store.acquire_lease(breaker_key(), policy(), "b", 1.0)
    assert second.granted
    assert await home.store.apply([batch((1,), lease=first.lease_id)]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and snapshot.state is HALF_OPEN


async def test_max_requests_probe_successes_close_the_breaker(home: Home) -> None:
    await make_half_open(home, max_requests=2)
    cb = policy("consecutiveFailures >= 1", max_requests=2, timeout=10.0)
    a = await home.store.acquire_lease(breaker_key(), cb, "a", 5.0)
    assert await home.store.apply([batch((1,), cb=cb, lease=a.lease_id)]) == []
    b = await home.store.acquire_lease(breaker_key(), cb, "b", 5.0)
    [event] = await home.store.apply([batch((1,), cb=cb, instance="b", lease=b.lease_id)])
    assert (event.from_state, event.to_state) == (HALF_OPEN, CLOSED)
    assert event.cause is TransitionCause.PROBE_SUCCESS
    assert event.instance_id == "b"
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.state, snapshot.counts, snapshot.active_leases) == (CLOSED, Counts(), 0)


async def test_a_probe_failure_reopens_the_breaker(home: Home) -> None:
    await make_half_open(home)
    cb = policy("consecutiveFailures >= 1", timeout=10.0)
    lease = await home.store.acquire_lease(breaker_key(), cb, "a", 5.0)
    [event] = await home.store.apply([batch((-1,), cb=cb, lease=lease.lease_id)])
    assert (event.from_state, event.to_state) == (HALF_OPEN, OPEN)
    assert event.cause is TransitionCause.PROBE_FAILURE
    assert event.open_until == pytest.approx(home.clock.now + 10.0)


async def test_outcomes_without_a_lease_do_not_count_in_half_open(home: Home) -> None:
    await make_half_open(home)
    assert await home.store.apply([batch((1, -1))]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and (snapshot.state, snapshot.counts) == (HALF_OPEN, Counts())


# -- overrides and reset -------------------------------------------------------------


async def test_force_open_wins_over_a_closed_breaker_and_clearing_restores_it(home: Home) -> None:
    await home.store.apply([batch((2, -1))])
    snapshot = await home.store.set_override(
        breaker_key(), BreakerOverride.FORCE_OPEN, reason="upstream maintenance", ttl=None,
        set_by="ops",
    )
    assert snapshot.state is OPEN and snapshot.generation == 1
    assert snapshot.override is not None
    assert (snapshot.override.override, snapshot.override.reason, snapshot.override.set_by) == (
        BreakerOverride.FORCE_OPEN, "upstream maintenance", "ops",
    )
    assert snapshot.override.expires_at is None
    assert await home.store.apply([batch((-9,))]) == []  # frozen: nothing counted
    cleared = await home.store.set_override(
        breaker_key(), None, reason="done", ttl=None, set_by="ops"
    )
    assert (cleared.state, cleared.override, cleared.generation) == (CLOSED, None, 2)
    assert cleared.counts == Counts(3, 2, 1, 0, 1)
    events = await home.store.recent_events(breaker_key())
    assert [(e.from_state, e.to_state, e.cause) for e in events] == [
        (CLOSED, OPEN, TransitionCause.OVERRIDE),
        (OPEN, CLOSED, TransitionCause.OVERRIDE),
    ]
    assert "upstream maintenance" in events[0].detail


async def test_force_closed_and_disabled_let_calls_through_and_grant_no_lease(home: Home) -> None:
    await trip_open(home)
    closed = await home.store.set_override(
        breaker_key(), BreakerOverride.FORCE_CLOSED, reason="r", ttl=None, set_by="ops"
    )
    assert closed.state is CLOSED
    disabled = await home.store.set_override(
        breaker_key(), BreakerOverride.DISABLED, reason="r", ttl=None, set_by="ops"
    )
    # The effective state stays closed, but agents must hear that the override changed
    # (disabled also stops their reports): an OVERRIDE event, a new generation.
    assert disabled.state is CLOSED and disabled.generation == closed.generation + 1
    [*_, event] = await home.store.recent_events(breaker_key())
    assert (event.from_state, event.to_state, event.cause) == (
        CLOSED, CLOSED, TransitionCause.OVERRIDE
    )
    same = await home.store.set_override(
        breaker_key(), BreakerOverride.DISABLED, reason="again", ttl=None, set_by="ops"
    )
    assert same.generation == disabled.generation  # the same override again: no event
    assert not (await home.store.acquire_lease(breaker_key(), policy(), "a", 5.0)).granted


async def test_an_override_on_a_closed_breaker_is_an_event_for_agents(home: Home) -> None:
    await home.store.apply([batch((1,))])
    forced = await home.store.set_override(
        breaker_key(), BreakerOverride.FORCE_CLOSED, reason="deploy", ttl=None, set_by="ops"
    )
    cleared = await home.store.set_override(breaker_key(), None, reason="done", ttl=None,
                                            set_by="ops")
    events = await home.store.recent_events(breaker_key())
    assert [(e.from_state, e.to_state, e.cause) for e in events] == [
        (CLOSED, CLOSED, TransitionCause.OVERRIDE), (CLOSED, CLOSED, TransitionCause.OVERRIDE)]
    assert (forced.generation, cleared.generation) == (1, 2)
    again = await home.store.set_override(breaker_key(), None, reason="", ttl=None, set_by="")
    assert again.generation == 2  # nothing to clear: no event


async def test_an_override_with_a_ttl_expires_on_advance(home: Home) -> None:
    await home.store.apply([batch((1,))])
    snapshot = await home.store.set_override(
        breaker_key(), BreakerOverride.FORCE_OPEN, reason="r", ttl=5.0, set_by="ops"
    )
    assert snapshot.override is not None
    assert snapshot.override.expires_at == pytest.approx(home.clock.now + 5.0)
    home.clock.advance(4.0)
    assert await home.store.advance() == []
    home.clock.advance(1.25)
    [event] = await home.store.advance()
    assert (event.from_state, event.to_state, event.cause) == (
        OPEN, CLOSED, TransitionCause.OVERRIDE
    )
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and snapshot.override is None


async def test_clearing_an_override_resumes_an_open_timeout_that_passed_meanwhile(
    home: Home,
) -> None:
    await trip_open(home, cb_timeout=10.0)
    await home.store.set_override(
        breaker_key(), BreakerOverride.FORCE_OPEN, reason="r", ttl=None, set_by=""
    )
    home.clock.advance(20.0)
    assert await home.store.advance() == []  # frozen
    await home.store.set_override(breaker_key(), None, reason="r", ttl=None, set_by="")
    [event] = await home.store.advance()
    assert (event.from_state, event.to_state, event.cause) == (
        OPEN, HALF_OPEN, TransitionCause.TIMEOUT
    )


async def test_reset_closes_zeroes_counts_clears_the_override_and_records_why(home: Home) -> None:
    await trip_open(home)
    await home.store.set_override(
        breaker_key(), BreakerOverride.FORCE_OPEN, reason="r", ttl=None, set_by=""
    )
    snapshot = await home.store.reset(breaker_key(), reason="fixed", set_by="alice")
    assert (snapshot.state, snapshot.counts, snapshot.override) == (CLOSED, Counts(), None)
    [*_, event] = await home.store.recent_events(breaker_key())
    assert (event.from_state, event.to_state, event.cause) == (OPEN, CLOSED, TransitionCause.RESET)
    assert event.generation == snapshot.generation == 3  # trip, override, reset
    assert "fixed" in event.detail and "alice" in event.detail
    again = await home.store.reset(breaker_key(), reason="again", set_by="")
    assert again.generation == 4  # a reset is always a new generation


async def test_override_and_reset_of_an_unknown_breaker_raise_breaker_not_found(home: Home) -> None:
    with pytest.raises(BreakerNotFound):
        await home.store.set_override(
            breaker_key(), BreakerOverride.FORCE_OPEN, reason="", ttl=None, set_by=""
        )
    with pytest.raises(KeyError):
        await home.store.reset(breaker_key(), reason="", set_by="")
    with pytest.raises(BreakerNotFound):  # a policy creates a breaker only to override it
        await home.store.set_override(
            breaker_key(), None, reason="", ttl=None, set_by="", policy=policy()
        )
    assert await home.store.get(breaker_key()) is None


# -- overrides ahead of use, and on every breaker of a target ----------------------------------

APP = BreakerTarget("default", "resiliency", TargetKind.APP, "order-processor")


async def force_open_target(home: Home, ttl: float | None = None, reason: str = "maintenance"
                            ) -> list[BreakerSnapshot]:
    return await home.store.set_target_override(
        APP, BreakerOverride.FORCE_OPEN, reason=reason, ttl=ttl, set_by="ops"
    )


async def test_an_override_ahead_of_use_creates_the_breaker_with_the_policy_given(
    home: Home,
) -> None:
    cb = policy("consecutiveFailures >= 2", timeout=10.0)
    snapshot = await home.store.set_override(
        breaker_key(), BreakerOverride.FORCE_OPEN, reason="migration", ttl=None, set_by="ops",
        policy=cb,
    )
    assert (snapshot.state, snapshot.generation, snapshot.counts, snapshot.policy) == (
        OPEN, 1, Counts(), cb
    )
    assert snapshot.override is not None and snapshot.override.reason == "migration"
    assert snapshot.open_until is None  # open by the operator, not waiting to probe
    [event] = await home.store.recent_events(breaker_key())
    assert (event.from_state, event.to_state, event.cause) == (
        CLOSED, OPEN, TransitionCause.OVERRIDE)
    assert event.detail == "migration (by ops)"
    assert [s.key for s in await home.store.list()] == [breaker_key()]
    # The first report brings the agent's policy; its outcomes are dropped (frozen).
    reported = policy("consecutiveFailures >= 1", timeout=10.0)
    assert await home.store.apply([batch((-3,), cb=reported)]) == []
    cleared = await home.store.set_override(breaker_key(), None, reason="", ttl=None, set_by="")
    assert (cleared.state, cleared.policy, cleared.counts) == (CLOSED, reported, Counts())
    [trip] = await home.store.apply([batch((-1,), cb=reported)])
    assert trip.cause is TransitionCause.TRIP


async def test_a_target_override_reaches_every_existing_breaker_of_the_target_only(
    home: Home,
) -> None:
    methods = [f"m{i}" for i in range(8)]  # spread over the Redis store's partitions
    others = [breaker_key("inventory", "stock"),
              BreakerKey("default", "canary", TargetKind.APP, "order-processor", "m0"),
              BreakerKey("default", "resiliency", TargetKind.ACTOR, "order-processor", "m0")]
    await home.store.apply([batch((1,), key=breaker_key(method=m)) for m in methods]
                           + [batch((1,), key=k) for k in others])
    position, _ = await home.store.read_events("")
    snapshots = await force_open_target(home)
    assert [s.key.method for s in snapshots] == methods
    assert all(s.state is OPEN and s.generation == 1 for s in snapshots)
    assert all(s.override is not None and s.override.reason == "maintenance" for s in snapshots)
    _, events = await home.store.read_events(position)
    assert sorted(e.key.method for e in events) == methods
    assert {(e.from_state, e.to_state, e.cause, e.detail) for e in events} == {
        (CLOSED, OPEN, TransitionCause.OVERRIDE, "maintenance (by ops)")}
    for key in others:
        untouched = await home.store.get(key)
        assert untouched is not None and untouched.override is None
    if isinstance(home.store, RedisBreakerStore):  # the target's breakers span partitions
        assert len({home.store.partition_of(breaker_key(method=m)) for m in methods}) > 1


async def test_a_breaker_first_seen_under_a_target_override_starts_with_it(home: Home) -> None:
    assert await force_open_target(home) == []  # no breaker of it yet
    [listed] = await home.store.target_overrides()
    assert (listed.target, listed.info.override, listed.info.reason, listed.info.set_by) == (
        APP, BreakerOverride.FORCE_OPEN, "maintenance", "ops")
    assert listed.info.expires_at is None
    cb = policy("consecutiveFailures >= 1")
    [event] = await home.store.apply([batch((-2,), cb=cb)])
    assert (event.from_state, event.to_state, event.cause, event.generation) == (
        CLOSED, OPEN, TransitionCause.OVERRIDE, 1)
    assert event.detail == "maintenance (by ops)"
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and snapshot.counts == Counts()  # frozen: nothing counted
    assert snapshot.override is not None
    assert snapshot.override.override is BreakerOverride.FORCE_OPEN
    [trip] = await home.store.apply([batch((-1,), cb=cb, key=breaker_key("inventory"))])
    assert trip.cause is TransitionCause.TRIP  # another target: no override


async def test_adopting_creates_a_breaker_only_under_a_target_override(home: Home) -> None:
    assert await home.store.adopt_target_override(breaker_key(), policy()) is None
    assert await home.store.get(breaker_key()) is None
    await home.store.apply([batch((1,), key=breaker_key(method="used"))])
    await force_open_target(home)
    adopted = await home.store.adopt_target_override(breaker_key(), policy())
    assert adopted is not None
    assert (adopted.state, adopted.generation, adopted.policy) == (OPEN, 1, policy())
    again = await home.store.adopt_target_override(breaker_key(), policy())
    assert again is not None and again.generation == 1  # it exists: nothing more happens
    await home.store.set_override(breaker_key(method="used"), None, reason="", ttl=None,
                                  set_by="")
    kept = await home.store.adopt_target_override(breaker_key(method="used"), policy())
    assert kept is not None and kept.override is None  # a breaker with state is left as it is
    other = breaker_key("inventory")
    assert await home.store.adopt_target_override(other, policy()) is None


async def test_a_target_override_with_a_ttl_ends_for_every_breaker_at_once(home: Home) -> None:
    await home.store.apply([batch((1,), key=breaker_key(method="early"))])
    [early] = await force_open_target(home, ttl=5.0)
    assert early.override is not None
    assert early.override.expires_at == pytest.approx(home.clock.now + 5.0)
    expiry = home.clock.now + 5.0
    home.clock.advance(4.0)
    [created] = await home.store.apply([batch((1,), key=breaker_key(method="late"))])
    late = await home.store.get(breaker_key(method="late"))
    assert late is not None and late.override is not None
    assert late.override.expires_at == pytest.approx(expiry)  # the target's, not 5s more
    assert created.cause is TransitionCause.OVERRIDE
    assert await home.store.advance() == []
    home.clock.advance(1.25)
    expired = await home.store.advance()
    assert sorted((e.key.method, e.to_state, e.detail) for e in expired) == [
        ("early", CLOSED, "override expired"), ("late", CLOSED, "override expired")]
    assert await home.store.target_overrides() == []
    assert await home.store.apply([batch((1,), key=breaker_key(method="after"))]) == []
    after = await home.store.get(breaker_key(method="after"))
    assert after is not None and after.override is None


async def test_clearing_a_target_override_clears_its_breakers_and_spares_later_ones(
    home: Home,
) -> None:
    await home.store.apply([batch((1,), key=breaker_key(method="a"))])
    await force_open_target(home)
    await home.store.set_override(breaker_key(method="a"), BreakerOverride.DISABLED,
                                  reason="one breaker", ttl=None, set_by="ops")
    await home.store.apply([batch((1,), key=breaker_key(method="b"))])
    position, _ = await home.store.read_events("")
    cleared = await home.store.set_target_override(APP, None, reason="done", ttl=None,
                                                   set_by="ops")
    assert [(s.key.method, s.state, s.override) for s in cleared] == [
        ("a", CLOSED, None), ("b", CLOSED, None)]
    _, events = await home.store.read_events(position)  # ordered within a breaker only
    assert sorted((e.key.method, e.from_state, e.to_state, e.cause) for e in events) == [
        ("a", CLOSED, CLOSED, TransitionCause.OVERRIDE),
        ("b", OPEN, CLOSED, TransitionCause.OVERRIDE)]
    assert await home.store.target_overrides() == []
    assert await home.store.apply([batch((1,), key=breaker_key(method="c"))]) == []
    again = await home.store.set_target_override(APP, None, reason="", ttl=None, set_by="")
    assert [s.generation for s in again] == [s.generation for s in cleared] + [0]  # no events


async def test_operations_on_one_breaker_leave_the_target_override_in_force(home: Home) -> None:
    await force_open_target(home)
    await home.store.apply([batch((1,), key=breaker_key(method="a"))])
    reset = await home.store.reset(breaker_key(method="a"), reason="probe it", set_by="ops")
    assert (reset.state, reset.override) == (CLOSED, None)
    [event] = await home.store.apply([batch((1,), key=breaker_key(method="b"))])
    assert (event.to_state, event.cause) == (OPEN, TransitionCause.OVERRIDE)
    assert [r.target for r in await home.store.target_overrides()] == [APP]


async def test_setting_a_target_override_again_changes_no_state(home: Home) -> None:
    await home.store.apply([batch((1,))])
    [first] = await force_open_target(home)
    [second] = await force_open_target(home, reason="longer maintenance", ttl=60.0)
    assert second.generation == first.generation == 1  # the same override: no event
    assert second.override is not None and second.override.reason == "longer maintenance"
    [listed] = await home.store.target_overrides()
    assert listed.info.reason == "longer maintenance"
    assert listed.info.expires_at == pytest.approx(home.clock.now + 60.0)
    await home.store.set_target_override(APP, BreakerOverride.FORCE_CLOSED, reason="r", ttl=None,
                                         set_by="ops")
    closed = await home.store.get(breaker_key())
    assert closed is not None and (closed.state, closed.generation) == (CLOSED, 2)


async def test_target_overrides_are_listed_by_namespace_and_target(home: Home) -> None:
    prod = BreakerTarget("prod", "resiliency", TargetKind.COMPONENT, "statestore")
    await force_open_target(home)
    await home.store.set_target_override(prod, BreakerOverride.DISABLED, reason="r", ttl=None,
                                         set_by="")
    assert [r.target for r in await home.store.target_overrides()] == sorted(
        [APP, prod], key=BreakerTarget.encode)
    assert [r.target for r in await home.store.target_overrides(namespace="prod")] == [prod]
    assert [r.target for r in await home.store.target_overrides(target="order-processor")] == [
        APP]
    assert await home.store.target_overrides(namespace="prod", target="order-processor") == []
    component = BreakerKey("prod", "resiliency", TargetKind.COMPONENT, "statestore", "outbound")
    [event] = await home.store.apply([batch((1,), key=component)])
    assert (event.to_state, event.cause) == (CLOSED, TransitionCause.OVERRIDE)


# -- events and listing ----------------------------------------------------------------


async def test_events_are_readable_from_a_position_and_resumable(home: Home) -> None:
    start, nothing = await home.store.read_events("")
    assert nothing == []
    await trip_open(home, cb_timeout=10.0)
    home.clock.advance(11.0)
    await home.store.advance()
    position, events = await home.store.read_events("0")
    assert transitions(events) == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]
    assert all(e.stream_id for e in events)
    _, from_start = await home.store.read_events(start)
    assert from_start == events
    await home.store.reset(breaker_key(), reason="", set_by="")
    later, new = await home.store.read_events(position)
    assert transitions(new) == [(HALF_OPEN, CLOSED)]
    assert await home.store.read_events(later) == (later, [])
    _, first_only = await home.store.read_events("0", count=1)
    assert transitions(first_only) == [(CLOSED, OPEN)]


async def test_a_blocking_read_returns_an_event_appended_while_it_waits(home: Home) -> None:
    position, _ = await home.store.read_events("")
    reader = asyncio.create_task(home.store.read_events(position, block=10.0))
    await asyncio.sleep(0)  # let the reader start waiting (ordering, not timing)
    await trip_open(home)
    _, events = await asyncio.wait_for(reader, timeout=10.0)
    assert transitions(events) == [(CLOSED, OPEN)]


async def test_invalid_event_position_is_a_value_error(home: Home) -> None:
    with pytest.raises(ValueError, match="position"):
        await home.store.read_events("not-a-position")


async def trip_several(home: Home, count: int) -> None:
    """``count`` breakers tripped, one event each (spread over the Redis partitions)."""
    cb = policy("consecutiveFailures >= 1", timeout=30.0)
    for i in range(count):
        await home.store.apply([batch((-1,), key=breaker_key("checkout", f"m{i}"), cb=cb)])


async def test_each_events_position_resumes_right_after_it(home: Home) -> None:
    start, _ = await home.store.read_events("")
    await trip_several(home, 8)
    _, events = await home.store.read_events(start)
    assert len(events) == 8
    for i, event in enumerate(events):
        assert await home.store.resumable(event.position)
        _, rest = await home.store.read_events(event.position)
        assert [e.key for e in rest] == [e.key for e in events[i + 1:]]


async def test_positions_the_store_gave_are_resumable(home: Home) -> None:
    start, _ = await home.store.read_events("")
    assert await home.store.resumable(start)
    assert await home.store.resumable("0")  # nothing trimmed yet
    await trip_open(home)
    later, _ = await home.store.read_events(start)
    assert await home.store.resumable(start)
    assert await home.store.resumable(later)


@pytest.mark.parametrize("position", ["not-a-position", "", "1,2,3", "-1"])
async def test_a_malformed_position_is_not_resumable(home: Home, position: str) -> None:
    await trip_open(home)
    assert not await home.store.resumable(position)


async def test_list_filters_by_namespace_target_and_state(home: Home) -> None:
    a = breaker_key("checkout", "pay")
    b = breaker_key("checkout", "")
    c = breaker_key("inventory", "", namespace="prod")
    await home.store.apply(
        [batch((1,), key=a), batch((-1,), key=b, cb=policy("totalFailures >= 1")),
         batch((1,), key=c)]
    )
    listed = [s.key for s in await home.store.list()]
    assert listed == sorted([a, b, c], key=lambda k: k.encode())
    assert {s.key for s in await home.store.list(namespace="default")} == {a, b}
    assert {s.key for s in await home.store.list(target="checkout")} == {a, b}
    assert [s.key for s in await home.store.list(state=OPEN)] == [b]
    assert [s.key for s in await home.store.list(namespace="prod", state=CLOSED)] == [c]
    assert await home.store.list(target="nothing") == []


# -- atomicity -----------------------------------------------------------------------------


async def test_concurrent_reports_lose_no_outcome_and_trip_exactly_once(home: Home) -> None:
    cb = policy("totalFailures >= 100")
    first = await asyncio.gather(
        *(home.store.apply([batch((3, -2), cb=cb, instance=f"i{n}")]) for n in range(40))
    )
    assert all(events == [] for events in first)
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.counts.requests, snapshot.counts.total_failures) == (200, 80)
    second = await asyncio.gather(
        *(home.store.apply([batch((-1,), cb=cb, instance=f"j{n}")]) for n in range(40))
    )
    events = [event for events in second for event in events]
    assert transitions(events) == [(CLOSED, OPEN)]


# -- quorum trips (extension) ----------------------------------------------------------------


def quorum_policy(
    trip: str = "consecutiveFailures >= 3",
    *,
    min_instances: int = 0,
    min_share: float = 0.0,
    interval: float = 0.0,
) -> CircuitBreakerPolicy:
    return policy(
        trip, interval=interval, timeout=10.0, quorum=BreakerQuorum(min_instances, min_share)
    )


async def window(home: Home) -> tuple[tuple[str, ...], int, int]:
    """The snapshot's failing names, failing count and reporting count."""
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    return (
        snapshot.failing_instances,
        snapshot.failing_instance_count,
        snapshot.reporting_instance_count,
    )


async def test_one_instance_failing_past_the_trip_does_not_open_the_fleet(home: Home) -> None:
    cb = quorum_policy(min_instances=2)
    assert await home.store.apply([batch((-10,), cb=cb, instance="a")]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.state, snapshot.counts.consecutive_failures) == (CLOSED, 10)
    assert snapshot.policy == cb
    assert await window(home) == (("a",), 1, 1)


async def test_a_second_instance_failure_opens_the_fleet_and_is_named(home: Home) -> None:
    cb = quorum_policy(min_instances=2)
    await home.store.apply([batch((5,), cb=cb, instance="c"), batch((2, -3), cb=cb, instance="a")])
    assert await window(home) == (("a",), 1, 2)
    [event] = await home.store.apply([batch((-1,), cb=cb, instance="b")])
    assert (event.from_state, event.to_state, event.cause) == (CLOSED, OPEN, TransitionCause.TRIP)
    assert event.instance_id == "b"
    assert await window(home) == (("a", "b"), 2, 3)  # open: who opened it
    home.clock.advance(10.5)
    grant = await home.store.acquire_lease(breaker_key(), cb, "c", 5.0)
    assert grant.granted
    [closed] = await home.store.apply([batch((1,), cb=cb, instance="c", lease=grant.lease_id)])
    assert closed.to_state is CLOSED
    assert await window(home) == ((), 0, 0)  # a new closed window empties the sets


async def test_the_share_rule_counts_failing_among_reporting_instances(home: Home) -> None:
    cb = quorum_policy("totalFailures >= 1", min_share=0.5)
    await home.store.apply([batch((1,), cb=cb, instance=name) for name in ("a", "b", "c")])
    assert await home.store.apply([batch((-1,), cb=cb, instance="a")]) == []  # 1 of 3
    assert await window(home) == (("a",), 1, 3)
    [event] = await home.store.apply([batch((-1,), cb=cb, instance="b")])  # 2 of 3
    assert event.to_state is OPEN


async def test_both_quorum_rules_must_hold(home: Home) -> None:
    cb = quorum_policy("totalFailures >= 1", min_instances=2, min_share=0.75)
    await home.store.apply([batch((1,), cb=cb, instance=name) for name in "abcd"])
    assert await home.store.apply(
        [batch((-1,), cb=cb, instance="a"), batch((-1,), cb=cb, instance="b")]
    ) == []  # two instances, but 2 of 4 is below 75%
    [event] = await home.store.apply([batch((-1,), cb=cb, instance="c")])
    assert event.to_state is OPEN


async def test_quorum_sets_reset_when_the_window_rolls_over(home: Home) -> None:
    cb = quorum_policy(min_instances=2, interval=10.0)
    await home.store.apply([batch((-5,), cb=cb, instance="a"), batch((1,), cb=cb, instance="b")])
    assert await window(home) == (("a",), 1, 2)
    home.clock.advance(10.5)
    assert await window(home) == ((), 0, 0)  # shown empty once the window has passed
    assert await home.store.apply([batch((-3,), cb=cb, instance="b")]) == []
    assert await window(home) == (("b",), 1, 1)  # a's failures belonged to the old window


async def test_quorum_sets_reset_on_every_state_change_and_on_reset(home: Home) -> None:
    cb = quorum_policy(min_instances=2)
    await home.store.apply([batch((-3,), cb=cb, instance="a"), batch((-1,), cb=cb, instance="b")])
    home.clock.advance(10.5)
    await home.store.advance()
    lease = await home.store.acquire_lease(breaker_key(), cb, "a", 5.0)
    [closed] = await home.store.apply([batch((1,), cb=cb, instance="a", lease=lease.lease_id)])
    assert closed.to_state is CLOSED
    assert await window(home) == ((), 0, 0)  # half-open outcomes are not attributed
    await home.store.apply([batch((-3,), cb=cb, instance="c")])
    assert await window(home) == (("c",), 1, 1)
    await home.store.reset(breaker_key(), reason="", set_by="")
    assert await window(home) == ((), 0, 0)
    assert await home.store.apply([batch((-3,), cb=cb, instance="d")]) == []


async def test_merged_runs_are_attributed_to_their_own_instances(home: Home) -> None:
    cb = quorum_policy(min_instances=2)
    merged = batch((-3, 2, -1, -2), cb=cb, instance="last", run_instances=("a", "b", "a", "c"))
    [event] = await home.store.apply([merged])
    assert event.to_state is OPEN
    assert event.instance_id == "c"  # the run whose failure met the quorum
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert snapshot.counts == Counts()  # a new window: nothing after the trip counted


async def test_merged_runs_of_one_instance_stay_below_the_quorum(home: Home) -> None:
    cb = quorum_policy(min_instances=2)
    merged = batch((-3, 2, -4), cb=cb, instance="last", run_instances=("a", "b", "a"))
    assert await home.store.apply([merged]) == []
    assert await window(home) == (("a",), 1, 2)
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None and snapshot.counts == Counts(9, 2, 7, 0, 4)


async def test_run_instances_must_name_every_run(home: Home) -> None:
    cb = quorum_policy(min_instances=2)
    with pytest.raises(ValueError, match="run_instances"):
        await home.store.apply([batch((-1, 1), cb=cb, run_instances=("a",))])
    assert await home.store.get(breaker_key()) is None  # nothing applied


async def test_a_changed_quorum_restarts_the_window(home: Home) -> None:
    await home.store.apply([batch((-2,), cb=policy(), instance="a")])
    cb = quorum_policy(min_instances=2)
    assert await home.store.apply([batch((-1,), cb=cb, instance="b")]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.policy, snapshot.counts.total_failures) == (cb, 1)
    assert await window(home) == (("b",), 1, 1)
    looser = quorum_policy(min_instances=1)
    [event] = await home.store.apply([batch((-3,), cb=looser, instance="b")])
    assert event.to_state is OPEN  # 3 failures of the new window, one instance is enough
    home.clock.advance(10.5)
    await home.store.advance()
    lease = await home.store.acquire_lease(breaker_key(), looser, "b", 5.0)
    await home.store.apply([batch((1,), cb=looser, instance="b", lease=lease.lease_id)])
    await home.store.apply([batch((-1,), cb=looser, instance="b")])
    assert await home.store.apply([batch((-1,), cb=policy(), instance="b")]) == []
    snapshot = await home.store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.policy.quorum, snapshot.counts.total_failures) == (None, 1)
    assert await window(home) == ((), 0, 0)  # an ordinary breaker again


async def test_listing_shows_the_window_of_quorum_breakers(home: Home) -> None:
    cb = quorum_policy(min_instances=3)
    other = breaker_key("inventory", "")
    await home.store.apply([
        batch((-1,), cb=cb, instance="b"),
        batch((-1, 1), cb=cb, instance="a"),
        batch((1,), cb=cb, instance="c"),
        batch((-1,), key=other),
    ])
    snapshots = {s.key: s for s in await home.store.list()}
    quorum_breaker = snapshots[breaker_key()]
    assert (
        quorum_breaker.failing_instances,
        quorum_breaker.failing_instance_count,
        quorum_breaker.reporting_instance_count,
    ) == (("a", "b"), 2, 3)
    assert snapshots[other].failing_instance_count == 0
    assert snapshots[other].policy.quorum is None


async def test_a_snapshot_names_at_most_a_hundred_failing_instances(home: Home) -> None:
    cb = quorum_policy("totalFailures >= 1000", min_instances=1000)
    names = [f"i{n:03}" for n in range(120)]
    await home.store.apply([batch((-1,) * 120, cb=cb, run_instances=tuple(names))])
    assert await window(home) == (tuple(names[:100]), 120, 120)
