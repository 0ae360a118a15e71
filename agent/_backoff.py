"""Retry schedules: Dapr's constant and exponential (cenkalti/backoff) back-offs.

A schedule is created per guarded call (it carries the call's start time and
the exponential state) and answers "how long until the next attempt, if any".
"""

from __future__ import annotations

import random
from collections.abc import Callable

from fusebox.agent.policy import BackoffKind, RetryPolicy

Random = Callable[[], float]  # uniform in [0, 1), like random.random


class RetrySchedule:
    """The delays of one call's retries under ``policy``.

    ``next_delay(elapsed)`` returns the seconds to wait before the next attempt,
    or ``None`` when the policy allows no more: ``maxRetries`` reached, or (for
    exponential) ``elapsed + next delay`` would pass ``maxElapsedTime``, as in
    cenkalti/backoff's ``ExponentialBackOff.NextBackOff``.
    """

    __slots__ = ("_current", "_exponential", "_policy", "_random", "retries")

    def __init__(self, policy: RetryPolicy, rand: Random = random.random) -> None:
        self._policy = policy
        self._random = rand
        self._exponential = policy.backoff is BackoffKind.EXPONENTIAL
        self._current = policy.initial_interval
        #: Retries handed out so far.
        self.retries = 0

    def next_delay(self, elapsed: float, retry_after: float | None = None) -> float | None:
        """The next delay, or ``None`` to stop. ``retry_after`` overrides the computed
        delay (capped at ``maxInterval``) when the policy honours Retry-After."""
        policy = self._policy
        if 0 <= policy.max_retries <= self.retries:
            return None
        if self._exponential:
            delay = self._next_exponential()
            if 0 < policy.max_elapsed_time < elapsed + delay:
                return None
        else:
            delay = policy.duration
        if retry_after is not None and policy.honor_retry_after:
            delay = min(max(retry_after, 0.0), policy.max_interval)
            if self._exponential and 0 < policy.max_elapsed_time < elapsed + delay:
                return None
        self.retries += 1
        return delay

    def _next_exponential(self) -> float:
        policy = self._policy
        current = self._current
        factor = policy.randomization_factor
        if factor == 0:
            delay = current
        else:
            delta = factor * current
            low = current - delta
            # cenkalti adds one nanosecond to the range so the upper bound is reachable.
            delay = low + self._random() * (2 * delta + 1e-9)
        if current >= policy.max_interval / policy.multiplier:
            self._current = policy.max_interval
        else:
            self._current = current * policy.multiplier
        return delay
