"""Bounds on what one agent may make the server do: report rate, breakers per target.

- ``ReportRateLimiter``: a token bucket per Connect stream. Agents flush every
  10 ms (plus an early flush when a trip is near), far below the default of
  500 reports/s with a burst of 1,000; a stream above it is closed with
  RESOURCE_EXHAUSTED and the agent reconnects with backoff (its breakers run
  locally meanwhile).
- ``BreakerBudget``: at most ``max_per_target`` breakers per target (a spec's
  app / actor type / component), like Dapr's ``circuitBreakerCacheSize``, so
  reports naming ever new methods or actor ids cannot create unbounded keys in
  the breaker store. A breaker beyond the budget is *refused* (ReportRejected;
  the agent keeps it local), never evicted: evicting a live breaker would
  silently close an open circuit for the whole cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from fusebox.agent.breaker_key import BreakerKey

__all__ = [
    "DEFAULT_MAX_BREAKERS_PER_TARGET",
    "DEFAULT_REPORT_BURST",
    "DEFAULT_REPORT_RATE",
    "BreakerBudget",
    "TokenBucket",
]

DEFAULT_REPORT_RATE = 500.0  # reports per second per Connect stream
DEFAULT_REPORT_BURST = 1000
DEFAULT_MAX_BREAKERS_PER_TARGET = 1000

TargetKey = tuple[str, str, str, str]  # namespace, spec, kind, target


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take()`` spends one if there is one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def target_of(key: BreakerKey) -> TargetKey:
    return (key.namespace, key.spec, key.kind.value, key.target)


class BreakerBudget:
    """Which breakers exist per target, and whether one more may be created."""

    def __init__(self, max_per_target: int = DEFAULT_MAX_BREAKERS_PER_TARGET) -> None:
        self.max_per_target = max_per_target
        self._known: dict[TargetKey, set[BreakerKey]] = {}

    def know(self, keys: Iterable[BreakerKey]) -> None:
        """Count breakers that already exist (e.g. listed from the store at start)."""
        for key in keys:
            self._known.setdefault(target_of(key), set()).add(key)

    def admit(self, key: BreakerKey) -> bool:
        """True if ``key`` exists or fits in its target's budget (it is then counted)."""
        known = self._known.setdefault(target_of(key), set())
        if key in known:
            return True
        if len(known) >= self.max_per_target:
            return False
        known.add(key)
        return True
