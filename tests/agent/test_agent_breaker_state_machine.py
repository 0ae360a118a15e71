"""BreakerStateMachine: gobreaker's semantics, driven by an explicit clock."""

from __future__ import annotations

import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusebox.agent import BreakerState
from fusebox.agent.breaker import BreakerStateMachine, Counts, TransitionCause
from fusebox.agent.trip import compile_trip

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN


def machine(trip: str, *, max_requests: int = 1, interval: float = 0.0,
            timeout: float = 60.0) -> BreakerStateMachine:
    return BreakerStateMachine(max_requests=max_requests, interval=interval, timeout=timeout,
                               trip=compile_trip(trip), now=0.0)


def run(sm: BreakerStateMachine, success: bool, now: float = 0.0) -> bool:
    """One request; False when the breaker rejected it."""
    generation = sm.before_request(now)
    if generation is None:
        return False
    sm.after_request(generation, success, now)
    return True


def test_requests_trip_counts_every_admitted_request() -> None:
    sm = machine("requests > 4")
    for _ in range(4):
        run(sm, True)
    assert sm.state is CLOSED
    run(sm, False)  # the fifth request fails: requests == 5 > 4
    assert sm.state is OPEN


def test_total_failures_trip_is_not_reset_by_a_success() -> None:
    sm = machine("totalFailures > 4")
    for outcome in [False, False, True, False, False, True]:
        run(sm, outcome)
    assert sm.state is CLOSED and sm.counts.total_failures == 4
    run(sm, False)
    assert sm.state is OPEN


def test_consecutive_failures_trip_is_reset_by_a_success() -> None:
    sm = machine("consecutiveFailures > 3")
    for outcome in [False, False, False, True, False, False, False]:
        run(sm, outcome)
    assert sm.state is CLOSED
    run(sm, False)
    assert sm.state is OPEN


def test_open_rejects_until_the_timeout_has_passed_then_half_open() -> None:
    sm = machine("consecutiveFailures > 0", timeout=30.0)
    run(sm, False, now=0.0)
    assert not run(sm, True, now=29.0)
    assert not run(sm, True, now=30.0)  # gobreaker: the expiry must be strictly past
    assert sm.current_state(30.001) is HALF_OPEN


def test_half_open_admits_max_requests_and_closes_after_that_many_successes() -> None:
    sm = machine("consecutiveFailures > 0", max_requests=2, timeout=10.0)
    run(sm, False, now=0.0)
    now = 10.5
    first = sm.before_request(now)
    second = sm.before_request(now)
    assert first is not None and second is not None
    assert sm.before_request(now) is None  # a third probe is too many
    sm.after_request(first, True, now)
    assert sm.state is HALF_OPEN
    sm.after_request(second, True, now)
    assert sm.state is CLOSED
    assert sm.counts == Counts()


def test_any_failure_in_half_open_reopens() -> None:
    sm = machine("consecutiveFailures > 0", max_requests=3, timeout=10.0)
    run(sm, False, now=0.0)
    run(sm, True, now=11.0)
    run(sm, False, now=11.0)
    assert sm.state is OPEN
    assert sm.expiry == pytest.approx(21.0)


def test_interval_resets_the_counts_while_closed() -> None:
    sm = machine("consecutiveFailures > 2", interval=5.0)
    run(sm, False, now=0.0)
    run(sm, False, now=1.0)
    run(sm, False, now=5.5)  # the window reset at 5.0: this is the first failure again
    assert sm.state is CLOSED
    assert sm.counts == Counts(requests=1, total_failures=1, consecutive_failures=1)


def test_outcomes_from_an_older_generation_are_ignored() -> None:
    sm = machine("consecutiveFailures > 0", timeout=10.0)
    slow = sm.before_request(0.0)
    fast = sm.before_request(0.0)
    assert slow is not None and fast is not None
    sm.after_request(fast, False, 0.0)  # trips: a new generation
    run(sm, True, now=11.0)  # half-open probe succeeds: closed, yet another generation
    sm.after_request(slow, False, 11.0)  # the old call's failure arrives late
    assert sm.state is CLOSED


def test_transitions_are_queued_with_their_cause() -> None:
    sm = machine("consecutiveFailures > 0", timeout=10.0)
    run(sm, False, now=0.0)
    run(sm, True, now=10.5)
    causes = [(t.from_state, t.to_state, t.cause) for t in sm.take_transitions()]
    assert causes == [
        (CLOSED, OPEN, TransitionCause.TRIP),
        (OPEN, HALF_OPEN, TransitionCause.TIMEOUT),
        (HALF_OPEN, CLOSED, TransitionCause.PROBE_SUCCESS),
    ]
    assert sm.take_transitions() == []


def test_reset_closes_with_zero_counts_and_says_so() -> None:
    sm = machine("consecutiveFailures >= 2", timeout=10.0)
    for _ in range(2):
        run(sm, False)
    assert sm.take_transitions()[-1].to_state is OPEN
    sm.reset(now=1.0)
    assert (sm.state, sm.counts) == (CLOSED, Counts())
    [transition] = sm.take_transitions()
    assert (transition.from_state, transition.cause) == (OPEN, TransitionCause.RESET)
    sm.reset(now=2.0)  # already closed: a new window, no transition
    assert sm.take_transitions() == []


def test_expired_probe_slots_are_given_back_in_half_open_only() -> None:
    sm = machine("consecutiveFailures >= 1", max_requests=1, timeout=1.0)
    run(sm, False)
    assert sm.before_request(2.0) is not None  # the one half-open probe
    assert sm.before_request(2.0) is None
    sm.give_back_requests(1)  # its lease expired
    assert sm.before_request(2.0) is not None


def test_a_clock_stands_in_for_now_and_the_fast_path_never_reads_it() -> None:
    reads: list[float] = []

    def clock() -> float:
        reads.append(5.0)
        return 5.0

    sm = BreakerStateMachine(max_requests=1, interval=0.0, timeout=10.0,
                             trip=compile_trip("consecutiveFailures >= 2"), clock=clock,
                             concurrent=True)
    reads.clear()
    for _ in range(3):
        sm.after_request(sm.before_request(), True)
    assert reads == [] and sm.counts == Counts(3, 3, 0, 3, 0)
    sm.after_request(sm.before_request(), False)
    sm.after_request(sm.before_request(), False)
    assert sm.state is OPEN and reads
    assert sm.current_state() is OPEN
    assert sm.admits() is False


@given(
    steps=st.lists(st.tuples(st.floats(0, 3), st.integers(-4, 6)), max_size=30),
    interval=st.sampled_from([0.0, 2.0]),
)
@settings(max_examples=200, deadline=None)
def test_bulk_successes_equal_one_by_one(steps: list[tuple[float, int]], interval: float) -> None:
    def fresh() -> BreakerStateMachine:
        return machine("consecutiveFailures >= 3", max_requests=2, interval=interval,
                       timeout=1.0)

    bulk, single = fresh(), fresh()
    now = 0.0
    for dt, outcomes in steps:
        now += dt
        if outcomes > 0:
            bulk.record_successes(outcomes, now)
        for _ in range(abs(outcomes)):
            if not run(single, outcomes > 0, now):
                break
        for _ in range(-outcomes):
            if not run(bulk, False, now):
                break
        assert (bulk.state, bulk.counts, bulk.generation) == (
            single.state, single.counts, single.generation)


@pytest.mark.parametrize("concurrent", [False, True])
def test_the_fast_path_counts_like_the_full_one(concurrent: bool) -> None:
    sm = BreakerStateMachine(max_requests=1, interval=0.0, timeout=10.0,
                             trip=compile_trip("consecutiveFailures >= 3"), now=0.0,
                             concurrent=concurrent)
    for outcomes in ([True] * 4, [False, False], [True], [False, False]):
        for ok in outcomes:
            run(sm, ok)
    assert sm.counts == Counts(9, 5, 4, 0, 2)
    assert sm.state is CLOSED


def test_many_threads_on_the_lock_free_fast_path_lose_no_count() -> None:
    """Admissions and successes from many threads without a lock, failures under one
    (as the agent's Breaker does): every outcome is counted exactly once."""
    sm = BreakerStateMachine(max_requests=1, interval=0.0, timeout=10.0,
                             trip=compile_trip("consecutiveFailures >= 1000000"), now=0.0,
                             concurrent=True)
    lock = threading.Lock()
    threads, rounds, failures_each = 8, 5_000, 50

    def work(index: int) -> None:
        for i in range(rounds):
            fail = i % (rounds // failures_each) == 0
            generation = sm.admit_fast()
            if generation is None:
                with lock:
                    generation = sm.before_request(0.0)
            assert generation is not None
            if not fail and sm.succeed_fast(generation):
                continue
            with lock:
                sm.after_request(generation, not fail, 0.0)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(switch)
    total = threads * rounds
    counts = sm.counts
    assert (counts.requests, counts.total_failures) == (total, threads * failures_each)
    assert counts.total_successes == total - threads * failures_each
