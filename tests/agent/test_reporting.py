"""Outcome accumulation and the run-length wire encoding: order, bounds, splitting."""

from __future__ import annotations

import itertools
import random

import pytest

from fusebox.agent._reporting import (
    OutcomeAccumulator,
    ReportLimits,
    decode_runs,
    outcome_code,
    outcome_entries,
    pack_reports,
    probe_entry,
    run_lengths,
)
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import TargetKind
from fusebox.v1 import agent_pb2

KEY = BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "orders").to_proto()


def decoded(entries: list[agent_pb2.BreakerOutcomes]) -> list[tuple[int, bool]]:
    return [(e.generation, ok) for e in entries for ok in decode_runs(e.runs)]


def test_run_lengths_count_successes_positive_and_failures_negative_in_order() -> None:
    assert run_lengths([True, True, False, False, False, True]) == [2, -3, 1]
    assert run_lengths([]) == []
    assert run_lengths([False]) == [-1]


@pytest.mark.parametrize("seed", range(20))
def test_run_lengths_round_trip_any_sequence(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = [rng.random() < 0.7 for _ in range(rng.randrange(0, 300))]
    runs = run_lengths(outcomes)
    assert decode_runs(runs) == outcomes
    assert all(r != 0 for r in runs)
    assert all((a > 0) != (b > 0) for a, b in itertools.pairwise(runs))  # maximal runs


def test_accumulator_keeps_runs_in_order_and_later_adds_for_the_next_drain() -> None:
    acc = OutcomeAccumulator()
    for code in (3, 3, 2, 3):
        acc.add(code)
    assert acc.drain() == [(3, 2), (2, 1), (3, 1)]
    acc.add(5)
    assert acc.pending()
    assert acc.drain() == [(5, 1)]
    assert acc.drain() == [] and not acc.pending()


def test_counted_successes_fold_in_before_the_next_outcome() -> None:
    acc = OutcomeAccumulator()
    acc.count_successes(4)
    assert acc.success is not None and acc.success[0] == 4
    bump = acc.success[1]
    for _ in range(1000):
        bump()  # the lock-free success path: one count each, no entry
    acc.add(outcome_code(4, False))
    bump()
    assert acc.pending()
    assert acc.drain() == [(outcome_code(4, True), 1000), (outcome_code(4, False), 1),
                           (outcome_code(4, True), 1)]
    acc.count_successes(5)  # a new fleet generation: its own success code
    acc.success[1]()  # type: ignore[index]
    acc.count_successes(None)
    assert acc.drain() == [(outcome_code(5, True), 1)] and acc.success is None


def test_accumulator_is_bounded_and_drops_the_oldest_runs() -> None:
    acc = OutcomeAccumulator(capacity=4)
    for i in range(10):
        acc.add(outcome_code(1, i % 2 == 0))
    assert acc.drain() == [(outcome_code(1, i % 2 == 0), 1) for i in range(6, 10)]


def runs_of(codes: list[int]) -> list[tuple[int, int]]:
    return [(code, 1) for code in codes]


def test_outcomes_of_different_generations_become_separate_entries_in_order() -> None:
    codes = [outcome_code(4, True), outcome_code(4, False), outcome_code(5, False),
             outcome_code(5, False), outcome_code(4, True)]
    entries = outcome_entries(KEY, runs_of(codes), ReportLimits())
    assert [(e.generation, list(e.runs)) for e in entries] == [(4, [1, -1]), (5, [-2]), (4, [1])]
    assert all(e.key == KEY and not e.lease_id for e in entries)


def test_a_run_longer_than_the_wire_allows_is_split() -> None:
    entries = outcome_entries(KEY, [(outcome_code(2, True), 2**32)], ReportLimits())
    [entry] = entries
    assert sum(entry.runs) == 2**32 and all(0 < r < 2**31 for r in entry.runs)


def test_a_long_sequence_is_split_into_entries_of_at_most_max_runs() -> None:
    outcomes = [i % 2 == 0 for i in range(25)]  # 25 runs of length one
    entries = outcome_entries(KEY, runs_of([outcome_code(1, ok) for ok in outcomes]),
                              ReportLimits(max_runs=10))
    assert [len(e.runs) for e in entries] == [10, 10, 5]
    assert decoded(entries) == [(1, ok) for ok in outcomes]


def test_reports_hold_at_most_max_breakers_entries_and_number_their_sequence() -> None:
    entries = [probe_entry(KEY, g, f"lease-{g}", g % 2 == 0) for g in range(7)]
    reports = pack_reports(entries, ReportLimits(max_breakers=3), itertools.count(11))
    assert [len(r.breakers) for r in reports] == [3, 3, 1]
    assert [r.sequence for r in reports] == [11, 12, 13]
    flat = [e for r in reports for e in r.breakers]
    assert [e.lease_id for e in flat] == [f"lease-{g}" for g in range(7)]
    assert [list(e.runs) for e in flat] == [[1], [-1], [1], [-1], [1], [-1], [1]]


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReportLimits(max_runs=0)


def test_rejections_ride_on_the_last_entry_of_the_breaker() -> None:
    codes = [outcome_code(4, True), outcome_code(5, False)]
    entries = outcome_entries(KEY, runs_of(codes), ReportLimits(), rejected=3)
    assert [(e.generation, list(e.runs), e.rejected) for e in entries] == [
        (4, [1], 0), (5, [-1], 3)]


def test_rejections_without_outcomes_get_an_entry_with_no_runs() -> None:
    (entry,) = outcome_entries(KEY, [], ReportLimits(), rejected=2)
    assert entry.key == KEY and list(entry.runs) == [] and entry.rejected == 2
    assert outcome_entries(KEY, [], ReportLimits()) == []


def test_the_accumulator_counts_rejections_until_drained_or_cleared() -> None:
    acc = OutcomeAccumulator()
    assert not acc.pending()
    acc.rejected += 2
    assert acc.pending() and acc.drain() == []
    assert acc.drain_rejected() == 2 and acc.drain_rejected() == 0 and not acc.pending()
    acc.rejected += 1
    acc.clear()
    assert acc.drain_rejected() == 0
