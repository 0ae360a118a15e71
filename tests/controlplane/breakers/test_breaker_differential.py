"""One algorithm, three homes: the agent's ``BreakerStateMachine``, the embedded store
and the Redis scripts get identical random outcome sequences (with identical time)
and must produce identical transitions and counts after every step.

Policies may have a quorum (the fleet extension), outcomes come from a few
instances, and the quorum's window (failing and reporting instances) must agree
too. Merged batches (runs of several instances, ``run_instances``) go to the
stores whole and to the machine one outcome at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusebox.agent.breaker import BreakerState, BreakerStateMachine, Counts
from fusebox.agent.policy import BreakerQuorum, CircuitBreakerPolicy
from fusebox.agent.trip import compile_trip
from fusebox.controlplane.breakers import BreakerStore
from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.breakers.redis import RedisBreakerStore
from tests.controlplane.breakers.breaker_cases import (
    ManualClock,
    batch,
    breaker_key,
    trip_expressions,
)
from tests.support.redis_server import RedisServer

_SIMPLE_TRIPS = st.builds(
    "{} {} {}".format,
    st.sampled_from(["consecutiveFailures", "totalFailures", "requests", "totalSuccesses"]),
    st.sampled_from([">", ">=", "=="]),
    st.integers(0, 4),
)
_QUORUMS = st.one_of(
    st.none(),
    st.builds(
        BreakerQuorum,
        st.integers(0, 3),
        st.sampled_from([0.0, 1 / 3, 0.5, 2 / 3, 1.0]),
    ).filter(lambda q: q.min_instances > 0 or q.min_share > 0),
)
_POLICIES = st.builds(
    lambda max_requests, interval, timeout, trip, quorum: CircuitBreakerPolicy(
        "cb", max_requests=max_requests, interval=interval, timeout=timeout, trip=trip,
        quorum=quorum,
    ),
    st.integers(1, 3),
    st.sampled_from([0.0, 0.0, 2.0, 3.5]),
    st.sampled_from([1.0, 2.5, 4.0]),
    st.one_of(_SIMPLE_TRIPS, _SIMPLE_TRIPS.map(lambda t: f"{t} || requests / 0 > 1"),
              trip_expressions(max_leaves=4, max_literal=4)),
    _QUORUMS,
)
_INSTANCES = st.sampled_from(["a", "b", "c", "d"])
_RUNS = st.lists(
    st.tuples(st.integers(-3, 3).filter(lambda n: n != 0), _INSTANCES), min_size=1, max_size=4
).map(tuple)
# ("time", seconds) moves every clock; ("call", (success, instance)) is one guarded
# call; ("batch", ((run, instance), ...)) is a merged report, applied while closed.
_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("time"), st.integers(0, 12).map(lambda quarters: quarters / 4)),
        st.tuples(st.just("call"), st.tuples(st.booleans(), _INSTANCES)),
        st.tuples(st.just("call"), st.tuples(st.just(False), _INSTANCES)),
        st.tuples(st.just("batch"), _RUNS),
    ),
    max_size=40,
)


@dataclass
class Observed:
    transitions: list[tuple[BreakerState, BreakerState, str]]  # with the instance named
    state: BreakerState
    counts: Counts
    failing: tuple[str, ...]  # the quorum's window
    reporting: int


async def store_call(
    store: BreakerStore, cb: CircuitBreakerPolicy, success: bool, instance: str
) -> None:
    """One call as an agent in cluster mode makes it: a probe needs a lease first."""
    snapshot = await store.get(breaker_key())
    lease = ""
    if snapshot is not None and snapshot.state is BreakerState.HALF_OPEN:
        grant = await store.acquire_lease(breaker_key(), cb, instance, 60.0)
        if not grant.granted:
            return  # rejected, as the local machine would
        lease = grant.lease_id
    await store.apply([batch((1 if success else -1,), cb=cb, instance=instance, lease=lease)])


def machine_batch(
    machine: BreakerStateMachine, runs: tuple[tuple[int, str], ...], now: float
) -> str:
    """A merged report, one outcome at a time; the instance of the run that changed
    the state ("" when none did)."""
    for run, instance in runs:
        for _ in range(abs(run)):
            generation = machine.before_request(now)
            if generation is None:
                return instance
            machine.after_request(generation, run > 0, now, instance)
            if machine.pending:
                return instance
    return ""


async def observe(store: BreakerStore) -> Observed:
    snapshot = await store.get(breaker_key())
    assert snapshot is not None
    assert snapshot.failing_instance_count == len(snapshot.failing_instances)  # < 100 here
    events = await store.recent_events(breaker_key(), count=100)
    return Observed(
        [(e.from_state, e.to_state, e.instance_id) for e in events], snapshot.state,
        snapshot.counts, snapshot.failing_instances, snapshot.reporting_instance_count,
    )


async def run_homes(redis_url: str, cb: CircuitBreakerPolicy, steps: list[tuple[str, object]]
                    ) -> None:
    clock = ManualClock()
    machine = BreakerStateMachine(
        max_requests=cb.max_requests, interval=cb.interval, timeout=cb.timeout,
        trip=compile_trip(cb.trip), now=clock.now, quorum=cb.quorum,
    )
    local: list[tuple[BreakerState, BreakerState, str]] = []
    stores: list[BreakerStore] = [
        EmbeddedBreakerStore(clock=clock),
        RedisBreakerStore(redis_url, clock=clock, partitions=2),
    ]
    try:
        for store in stores:  # create the breaker at the start time, as the machine
            await store.apply([batch((), cb=cb)])
        for number, (kind, value) in enumerate(steps):
            cause = ""  # the instance the stores name in this step's events
            if kind == "time":
                assert isinstance(value, float)
                clock.advance(value)
                if machine.state is not BreakerState.CLOSED:
                    # What advance() does: time-driven transitions. A closed window
                    # rolls over lazily, on the next call, in every home (gobreaker).
                    machine.current_state(clock.now)
                for store in stores:
                    await store.advance()
            elif kind == "call":
                assert isinstance(value, tuple)
                success, cause = value
                generation = machine.before_request(clock.now)
                if generation is not None:
                    machine.after_request(generation, success, clock.now, cause)
                for store in stores:
                    await store_call(store, cb, success, cause)
            elif machine.state is BreakerState.CLOSED:  # a merged report
                assert isinstance(value, tuple)
                cause = machine_batch(machine, value, clock.now)
                runs = tuple(run for run, _ in value)
                instances = tuple(instance for _, instance in value)
                for store in stores:
                    await store.apply(
                        [batch(runs, cb=cb, instance="merged", run_instances=instances)]
                    )
            local += [(t.from_state, t.to_state, cause) for t in machine.take_transitions()]
            counts = machine.counts
            expiry = machine.expiry
            failing = tuple(sorted(machine.failing_instances))
            reporting = len(machine.reporting_instances)
            if machine.state is BreakerState.CLOSED and expiry is not None and expiry < clock.now:
                # The window has passed: zero, as the stores show it.
                counts, failing, reporting = Counts(), (), 0
            expected = Observed(local, machine.state, counts, failing, reporting)
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
