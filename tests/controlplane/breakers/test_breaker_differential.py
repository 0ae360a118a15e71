"""One algorithm, three homes: the agent's ``BreakerStateMachine``, the embedded store
and the Redis scripts get identical random outcome sequences (with identical time)
and must produce identical transitions and counts after every step."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent._breaker import BreakerState, BreakerStateMachine, Counts
from agent._policy import CircuitBreakerPolicy
from agent._trip import compile_trip
from controlplane.breakers import BreakerStore
from controlplane.breakers.embedded import EmbeddedBreakerStore
from controlplane.breakers.redis import RedisBreakerStore
from tests.controlplane.breakers.breaker_cases import (
    ManualClock,
    batch,
    breaker_id,
    trip_expressions,
)
from tests.support.redis_server import RedisServer

_SIMPLE_TRIPS = st.builds(
    "{} {} {}".format,
    st.sampled_from(["consecutiveFailures", "totalFailures", "requests", "totalSuccesses"]),
    st.sampled_from([">", ">=", "=="]),
    st.integers(0, 4),
)
_POLICIES = st.builds(
    lambda max_requests, interval, timeout, trip: CircuitBreakerPolicy(
        "cb", max_requests=max_requests, interval=interval, timeout=timeout, trip=trip
    ),
    st.integers(1, 3),
    st.sampled_from([0.0, 0.0, 2.0, 3.5]),
    st.sampled_from([1.0, 2.5, 4.0]),
    st.one_of(_SIMPLE_TRIPS, _SIMPLE_TRIPS.map(lambda t: f"{t} || requests / 0 > 1"),
              trip_expressions(max_leaves=4, max_literal=4)),
)
# ("time", seconds) moves every clock; ("call", success) is one guarded call.
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("time"), st.integers(0, 12).map(lambda quarters: quarters / 4)),
        st.tuples(st.just("call"), st.booleans()),
        st.tuples(st.just("call"), st.just(False)),
    ),
    max_size=40,
)


@dataclass
class Observed:
    transitions: list[tuple[BreakerState, BreakerState]]
    state: BreakerState
    counts: Counts


async def store_call(store: BreakerStore, cb: CircuitBreakerPolicy, success: bool) -> None:
    """One call as an agent in cluster mode makes it: a probe needs a lease first."""
    snapshot = await store.get(breaker_id())
    lease = ""
    if snapshot is not None and snapshot.state is BreakerState.HALF_OPEN:
        grant = await store.acquire_lease(breaker_id(), cb, "agent", 60.0)
        if not grant.granted:
            return  # rejected, as the local machine would
        lease = grant.lease_id
    await store.apply([batch((1 if success else -1,), cb=cb, lease=lease)])


async def observe(store: BreakerStore) -> Observed:
    snapshot = await store.get(breaker_id())
    assert snapshot is not None
    events = await store.recent_events(breaker_id(), count=100)
    return Observed([(e.from_state, e.to_state) for e in events], snapshot.state, snapshot.counts)


async def run_homes(redis_url: str, cb: CircuitBreakerPolicy, steps: list[tuple[str, object]]
                    ) -> None:
    clock = ManualClock()
    machine = BreakerStateMachine(
        max_requests=cb.max_requests, interval=cb.interval, timeout=cb.timeout,
        trip=compile_trip(cb.trip), now=clock.now,
    )
    local: list[tuple[BreakerState, BreakerState]] = []
    stores: list[BreakerStore] = [
        EmbeddedBreakerStore(clock=clock),
        RedisBreakerStore(redis_url, clock=clock, partitions=2),
    ]
    try:
        for store in stores:  # create the breaker at the start time, as the machine
            await store.apply([batch((), cb=cb)])
        for number, (kind, value) in enumerate(steps):
            if kind == "time":
                assert isinstance(value, float)
                clock.advance(value)
                if machine.state is not BreakerState.CLOSED:
                    # What advance() does: time-driven transitions. A closed window
                    # rolls over lazily, on the next call, in every home (gobreaker).
                    machine.current_state(clock.now)
                for store in stores:
                    await store.advance()
            else:
                assert isinstance(value, bool)
                generation = machine.before_request(clock.now)
                if generation is not None:
                    machine.after_request(generation, value, clock.now)
                for store in stores:
                    await store_call(store, cb, value)
            local += [(t.from_state, t.to_state) for t in machine.take_transitions()]
            counts = machine.counts
            expiry = machine.expiry
            if machine.state is BreakerState.CLOSED and expiry is not None and expiry < clock.now:
                counts = Counts()  # the window has passed: zero, as the stores show it
            expected = Observed(local, machine.state, counts)
            for store in stores:
                observed = await observe(store)
                assert observed == expected, (
                    f"{type(store).__name__} differs after step {number} {(kind, value)} "
                    f"with {cb}: {observed} != {expected}"
                )
    finally:
        for store in stores:
            await store.close()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(cb=_POLICIES, steps=_STEPS)
def test_state_machine_embedded_store_and_redis_agree(
    redis_server_for_properties: RedisServer, cb: CircuitBreakerPolicy,
    steps: list[tuple[str, object]],
) -> None:
    redis_server_for_properties.flushall()
    asyncio.run(run_homes(redis_server_for_properties.url, cb, steps))
