"""The bounds docs/budgets.md states, checked on random histories.

* A rate limiter admits at most ``depth + rate * (y - x)`` calls at times in any
  ``[x, y]``, whatever order its reservations (now, later, waiting) are decided in.
* A new share never adds tokens: the bucket keeps ``min(tokens, new depth)``.
* Threads deciding on one bucket at once (the baton, not a lock) admit exactly
  what one thread would, and count every reservation once.
* A retry budget allows, in any ``(a, b]``, at most ``ratio * first attempts in
  (a - window, b] + floor * (S/(S-1) * (b - a) + window)`` retries.
"""

from __future__ import annotations

import bisect
import sys
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from fusebox.agent._rate_limiter import RateLimiter
from fusebox.agent._retry_budget import SLOTS, RetryBudget
from fusebox.agent.policy import RateLimitPolicy, RetryBudgetPolicy, WhenExceeded

EPSILON = 1e-6

rate_limits = st.builds(
    lambda limit, period, burst, wait, max_wait: RateLimitPolicy(
        "l", limit=limit, period=period, burst=burst,
        when_exceeded=WhenExceeded.WAIT if wait else WhenExceeded.REJECT, max_wait=max_wait),
    limit=st.integers(1, 50),
    period=st.sampled_from([0.1, 1.0, 2.5, 60.0]),
    burst=st.integers(1, 20),
    wait=st.booleans(),
    max_wait=st.sampled_from([0.05, 0.5, 3.0]),
)
shares = st.sampled_from([1.0, 0.5, 0.25, 0.05])
# (time passing, how far ahead the call is asked for: 0 = now, > 0 = a retry after back-off)
requests = st.lists(
    st.tuples(st.sampled_from([0.0, 0.0, 0.001, 0.01, 0.1, 0.7, 3.0]),
              st.sampled_from([0.0, 0.0, 0.0, 0.05, 0.3, 2.0])),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(rate_limits, shares, requests)
def test_a_rate_limiter_never_admits_more_than_depth_plus_rate_times_the_interval(
    policy: RateLimitPolicy, share: float, history: list[tuple[float, float]],
) -> None:
    now = 100.0
    limiter = RateLimiter(policy, share, now)
    admitted: list[float] = []
    for elapsed, ahead in history:
        now += elapsed
        wait = limiter.reserve(now + ahead)
        if wait is not None:
            assert 0.0 <= wait <= limiter.max_wait + EPSILON
            admitted.append(now + ahead + wait)
    admitted.sort()
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            calls = j - i + 1
            assert calls <= limiter.depth + limiter.rate * (admitted[j] - start) + EPSILON


@settings(max_examples=300, deadline=None)
@given(rate_limits, st.lists(st.tuples(shares, st.sampled_from([0.0, 0.01, 0.3, 2.0]),
                                       st.integers(0, 5)), max_size=20))
def test_a_new_share_never_adds_tokens(
    policy: RateLimitPolicy, changes: list[tuple[float, float, int]],
) -> None:
    now = 100.0
    limiter = RateLimiter(policy, 1.0, now)
    for share, elapsed, calls in changes:
        now += elapsed
        for _ in range(calls):
            limiter.reserve(now)
        before = limiter.tokens(now)
        limiter.set_share(share, now)
        after = limiter.tokens(now)
        assert after <= before + EPSILON
        assert after <= limiter.depth + EPSILON
        assert after >= min(before, limiter.depth) - EPSILON  # kept, not lost


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 300), st.integers(2, 6), st.integers(1, 400), st.sampled_from([1.0, 0.3]))
def test_threads_racing_for_one_bucket_admit_exactly_its_depth_and_count_every_call(
    burst: int, threads: int, per_thread: int, share: float,
) -> None:
    # Time stands still: a bucket of depth d admits floor(d) calls, however they interleave.
    limiter = RateLimiter(RateLimitPolicy("l", limit=1, period=3600.0, burst=burst), share, 0.0)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
    try:
        start = threading.Barrier(threads)

        def caller() -> None:
            start.wait()
            for _ in range(per_thread):
                limiter.reserve(0.0)

        workers = [threading.Thread(target=caller) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        sys.setswitchinterval(switch)
    assert limiter.admitted == min(threads * per_thread, int(limiter.depth + EPSILON))
    assert limiter.admitted + limiter.refused == threads * per_thread


retry_budgets = st.builds(
    lambda ratio, window, floor: RetryBudgetPolicy("b", ratio, window, floor),
    ratio=st.sampled_from([0.1, 0.2, 0.5, 1.0]),
    window=st.sampled_from([1.0, 10.0]),
    floor=st.sampled_from([0.0, 0.5, 3.0]),
)
# (time passing, True: a first attempt / False: a retry asked for)
attempts = st.lists(st.tuples(st.sampled_from([0.0, 0.0, 0.05, 0.3, 1.1, 4.0]), st.booleans()),
                    max_size=80)


@settings(max_examples=300, deadline=None)
@given(retry_budgets, shares, attempts)
def test_a_retry_budget_never_allows_more_than_its_ratio_and_floor(
    policy: RetryBudgetPolicy, share: float, history: list[tuple[float, bool]],
) -> None:
    now = 100.0
    budget = RetryBudget(policy, share, now)
    firsts: list[float] = []
    retries: list[float] = []
    for elapsed, first in history:
        now += elapsed
        if first:
            budget.first_attempt(now)
            firsts.append(now)
        elif budget.allow_retry(now):
            retries.append(now)
    window, floor = policy.window, share * policy.min_retries_per_second
    moments = sorted({100.0, *firsts, *retries})
    for i, a in enumerate(moments):
        for b in moments[i:]:
            made = bisect.bisect_right(retries, b) - bisect.bisect_right(retries, a)
            counted = bisect.bisect_right(firsts, b) - bisect.bisect_right(firsts, a - window)
            allowed = policy.ratio * counted + floor * (SLOTS / (SLOTS - 1) * (b - a) + window)
            assert made <= allowed + EPSILON, (a, b, made, counted)
