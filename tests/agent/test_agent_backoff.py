"""Retry schedules: Dapr's constant back-off and cenkalti's exponential one."""

from __future__ import annotations

import random

import pytest

from fusebox.agent._backoff import RetrySchedule
from fusebox.agent.policy import BackoffKind, RetryPolicy


def delays(schedule: RetrySchedule, elapsed_each: float = 0.0, limit: int = 50) -> list[float]:
    out: list[float] = []
    elapsed = 0.0
    while len(out) < limit:
        delay = schedule.next_delay(elapsed)
        if delay is None:
            break
        out.append(delay)
        elapsed += delay + elapsed_each
    return out


def test_constant_backoff_waits_duration_and_max_retries_bounds_the_retries() -> None:
    policy = RetryPolicy("r", duration=5.0, max_retries=2)
    assert delays(RetrySchedule(policy)) == [5.0, 5.0]


def test_unlimited_retries_never_stop_on_their_own() -> None:
    policy = RetryPolicy("r", duration=1.0, max_retries=-1)
    assert len(delays(RetrySchedule(policy), limit=50)) == 50


def test_exponential_without_randomization_grows_by_the_multiplier_up_to_max_interval() -> None:
    policy = RetryPolicy("r", backoff=BackoffKind.EXPONENTIAL, max_interval=2.0,
                         randomization_factor=0.0, max_retries=6)
    assert delays(RetrySchedule(policy)) == pytest.approx([0.5, 0.75, 1.125, 1.6875, 2.0, 2.0])


def test_exponential_randomization_matches_cenkalti_with_a_seeded_random() -> None:
    policy = RetryPolicy("r", backoff=BackoffKind.EXPONENTIAL, max_interval=60.0, max_retries=8)
    got = delays(RetrySchedule(policy, random.Random(7).random))
    reference = random.Random(7)
    expected, current = [], 0.5
    for _ in range(8):
        delta = 0.5 * current
        expected.append(current - delta + reference.random() * (2 * delta + 1e-9))
        current = min(current * 1.5, 60.0)
    assert got == pytest.approx(expected)
    assert all(0.5 * c <= d <= 1.5 * c + 1e-9 for d, c in zip(got, [0.5 * 1.5**i for i in range(8)],
                                                               strict=True))


def test_exponential_stops_when_elapsed_plus_next_passes_max_elapsed_time() -> None:
    policy = RetryPolicy("r", backoff=BackoffKind.EXPONENTIAL, randomization_factor=0.0,
                         max_interval=10.0, max_elapsed_time=3.0)
    # 0.5 + 0.75 + 1.125 = 2.375; the next (1.6875) would end at 4.06 > 3
    assert delays(RetrySchedule(policy)) == pytest.approx([0.5, 0.75, 1.125])


def test_retry_after_replaces_the_delay_capped_at_max_interval_when_honoured() -> None:
    honoured = RetrySchedule(RetryPolicy("r", duration=1.0, max_interval=10.0,
                                         honor_retry_after=True))
    assert honoured.next_delay(0.0, retry_after=7.0) == 7.0
    assert honoured.next_delay(0.0, retry_after=120.0) == 10.0
    ignored = RetrySchedule(RetryPolicy("r", duration=1.0))
    assert ignored.next_delay(0.0, retry_after=7.0) == 1.0
