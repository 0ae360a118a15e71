"""Quorum trips (extension): the fleet machine opens only when enough distinct
instances fail; the policy's quorum survives the wire."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fusebox.agent.breaker import BreakerState, BreakerStateMachine, TransitionCause
from fusebox.agent.policy import (
    BreakerQuorum,
    CircuitBreakerPolicy,
    breaker_from_proto,
    breaker_to_proto,
)
from fusebox.agent.trip import compile_trip
from fusebox.v1 import policy_pb2

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def machine(
    quorum: BreakerQuorum | None,
    trip: str = "consecutiveFailures >= 3",
    *,
    interval: float = 0.0,
    timeout: float = 10.0,
) -> BreakerStateMachine:
    return BreakerStateMachine(
        max_requests=1, interval=interval, timeout=timeout, trip=compile_trip(trip), now=0.0,
        quorum=quorum,
    )


def call(sm: BreakerStateMachine, instance: str, success: bool, now: float = 0.0) -> None:
    generation = sm.before_request(now)
    if generation is not None:
        sm.after_request(generation, success, now, instance)


def test_one_instance_failing_past_the_trip_does_not_open_the_fleet() -> None:
    sm = machine(BreakerQuorum(min_instances=2))
    for _ in range(10):
        call(sm, "a", False)
    assert sm.state is CLOSED
    assert sm.counts.consecutive_failures == 10
    assert (sm.failing_instances, sm.reporting_instances) == ({"a"}, {"a"})


def test_a_second_instance_failing_opens_the_fleet_on_that_failure() -> None:
    sm = machine(BreakerQuorum(min_instances=2))
    for _ in range(3):
        call(sm, "a", False)
    call(sm, "b", False)
    assert sm.state is OPEN
    [transition] = sm.take_transitions()
    assert (transition.to_state, transition.cause) == (OPEN, TransitionCause.TRIP)
    # While open (and half-open) the sets name the instances that opened it...
    assert sm.failing_instances == {"a", "b"} == sm.reporting_instances
    call(sm, "c", True, now=10.5)  # the half-open probe succeeds: a new closed window
    assert sm.state is CLOSED
    assert sm.failing_instances == frozenset() == sm.reporting_instances  # ...until then


def test_the_trip_still_has_to_hold_when_the_quorum_does() -> None:
    sm = machine(BreakerQuorum(min_instances=2), trip="totalFailures >= 5")
    for instance in "abab":
        call(sm, instance, False)
    assert sm.state is CLOSED  # two instances failed, but only four failures
    call(sm, "a", False)
    assert sm.state is OPEN


def test_the_share_counts_failing_among_reporting_instances() -> None:
    sm = machine(BreakerQuorum(min_share=0.5), trip="totalFailures >= 1")
    for instance in "abc":
        call(sm, instance, True)
    call(sm, "a", False)  # 1 of 3 failing
    assert sm.state is CLOSED
    call(sm, "b", False)  # 2 of 3
    assert sm.state is OPEN


def test_both_rules_must_hold_when_both_are_set() -> None:
    sm = machine(BreakerQuorum(min_instances=2, min_share=0.75), trip="totalFailures >= 1")
    for instance in "abcd":
        call(sm, instance, True)
    call(sm, "a", False)
    call(sm, "b", False)  # 2 instances, but 2 of 4 < 75%
    call(sm, "c", False)  # 3 of 4
    assert sm.state is OPEN


def test_the_sets_empty_when_the_interval_window_rolls_over() -> None:
    sm = machine(BreakerQuorum(min_instances=2), interval=5.0)
    for _ in range(3):
        call(sm, "a", False, now=1.0)
    call(sm, "b", True, now=1.0)
    assert sm.reporting_instances == {"a", "b"}
    call(sm, "b", False, now=6.5)  # a new window: a's failures are forgotten
    assert sm.state is CLOSED
    assert (sm.failing_instances, sm.reporting_instances) == ({"b"}, {"b"})


def test_half_open_outcomes_are_not_attributed() -> None:
    sm = machine(BreakerQuorum(min_instances=2))
    for instance in "aab":
        call(sm, instance, False)
    assert sm.state is OPEN
    call(sm, "c", True, now=10.5)  # the probe closes the breaker
    assert sm.state is CLOSED
    assert sm.reporting_instances == frozenset()


def test_restarting_the_window_empties_counts_and_sets() -> None:
    sm = machine(BreakerQuorum(min_instances=2))
    call(sm, "a", False)
    sm.restart_window(1.0)
    assert (sm.counts.total_failures, sm.failing_instances) == (0, frozenset())


def test_without_a_quorum_nothing_is_attributed_and_the_trip_alone_decides() -> None:
    sm = machine(None)
    call(sm, "a", True)
    for _ in range(3):
        call(sm, "a", False)
    assert sm.state is OPEN
    assert sm.quorum is None and sm.reporting_instances == frozenset()


def test_bulk_successes_report_their_instance() -> None:
    sm = machine(BreakerQuorum(min_share=1.0))
    sm.record_successes(5, 0.0, "a")
    assert sm.reporting_instances == {"a"} and sm.counts.total_successes == 5


_QUORUMS = st.one_of(
    st.none(),
    st.builds(
        BreakerQuorum,
        st.integers(0, 2**32 - 1),
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1.0, exclude_min=True)),
    ),
)


@given(quorum=_QUORUMS)
def test_a_breaker_policy_survives_the_wire_with_or_without_its_quorum(
    quorum: BreakerQuorum | None,
) -> None:
    policy = CircuitBreakerPolicy("sharedCB", 1, 0.0, 30.0, "consecutiveFailures >= 5", quorum)
    message = policy_pb2.CircuitBreakerPolicy.FromString(
        breaker_to_proto(policy).SerializeToString()
    )
    assert message.HasField("quorum") is (quorum is not None)
    assert breaker_from_proto(message) == policy


def test_a_policy_without_quorum_serialises_as_before() -> None:
    policy = CircuitBreakerPolicy("simpleCB", 1, 0.0, 5.0, "consecutiveFailures >= 5")
    bare = policy_pb2.CircuitBreakerPolicy(
        name="simpleCB", max_requests=1, trip="consecutiveFailures >= 5"
    )
    bare.interval.FromNanoseconds(0)
    bare.timeout.FromNanoseconds(5_000_000_000)
    assert breaker_to_proto(policy).SerializeToString(deterministic=True) == (
        bare.SerializeToString(deterministic=True)
    )
