"""One instance's share of a rate limit: a token bucket kept as GCRA (docs/budgets.md).

GCRA (the generic cell rate algorithm) is a token bucket written as one
float, the *theoretical arrival time* ``tat``: a call asked for at ``t`` is
admitted at ``s = max(t, tat - tolerance)`` and moves ``tat`` to
``max(tat, s) + interval``, where ``interval = 1 / rate`` and
``tolerance = (depth - 1) * interval``. Why GCRA rather than a count of
tokens: a reservation at a future time (a retry after its back-off, a caller
that waits) is the same one line, and the bound "at most
``depth + rate * (y - x)`` admissions at times in ``[x, y]``" holds whatever
order reservations are decided in.

The lock guards a handful of float operations, never a wait or I/O; it is
uncontended in an asyncio agent. ``admitted`` and ``refused`` count the
reservations (cumulative, under the same lock): the link reports their growth
as the key's usage (docs/budgets.md, "Reports and shares"). A pushed share
(``set_share``) replaces the rate and depth and keeps ``min(tokens, new
depth)``: a rebalance never lets a burst through.
"""

from __future__ import annotations

import math
import threading

from fusebox.agent.policy import RateLimitPolicy, WhenExceeded

#: Seconds of float rounding forgiven: a token due at ``t`` is there at ``t``, not 1e-13 later.
_ROUNDING = 1e-9


class RateLimiter:
    """A token bucket for ``share`` of ``policy`` (thread-safe).

    ``reserve(at)`` admits a call at ``at`` or later: the seconds to wait
    from ``at`` (0.0: at once), or None when the wait would pass ``max_wait``
    (0 in reject mode). An admitted reservation is booked: the caller must
    then make the call at ``at`` + the wait.

    >>> limiter = RateLimiter(RateLimitPolicy("l", limit=2, period=1.0), share=1.0, now=0.0)
    >>> limiter.reserve(0.0), limiter.reserve(0.0), limiter.reserve(0.0)
    (0.0, 0.0, None)
    >>> limiter.reserve(0.5)
    0.0
    """

    __slots__ = ("_interval", "_lock", "_tat", "_tolerance", "admitted", "depth", "max_wait",
                 "policy", "rate", "refused", "share")

    def __init__(self, policy: RateLimitPolicy, share: float, now: float) -> None:
        self.policy = policy
        self.max_wait = policy.max_wait if policy.when_exceeded is WhenExceeded.WAIT else 0.0
        self._lock = threading.Lock()
        self._tat = -math.inf  # a full bucket
        self.share = self.rate = self.depth = 0.0
        self._interval = math.inf
        self._tolerance = 0.0  # (depth - 1) * interval, plus _ROUNDING
        #: Reservations admitted and refused since the bucket was made (read lock-free).
        self.admitted = self.refused = 0
        self.set_share(share, now)

    def reserve(self, at: float) -> float | None:
        """Book the earliest admission at or after ``at``: the wait, or None (refused)."""
        # The lock is taken by hand: ``with`` costs twice as much on the hot path.
        lock = self._lock
        lock.acquire()
        tat = self._tat
        earliest = tat - self._tolerance  # _ROUNDING early
        if earliest <= at:
            self._tat = (tat if tat > at else at) + self._interval
            self.admitted += 1
            lock.release()
            return 0.0
        wait = earliest + _ROUNDING - at
        if wait > self.max_wait:
            self.refused += 1
            lock.release()
            return None
        self._tat = tat + self._interval  # tat >= earliest > at: max(tat, earliest) is tat
        self.admitted += 1
        lock.release()
        return wait

    def next_free(self, at: float) -> float:
        """Seconds from ``at`` until a call would be admitted (inf: a zero share)."""
        return max(0.0, self._tat - self._tolerance + _ROUNDING - at)

    def tokens(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (negative: reservations ahead)."""
        if self._interval == math.inf:
            return 0.0
        return min(self.depth, self.depth - (self._tat - now) / self._interval)

    def set_share(self, share: float, now: float) -> None:
        """Enforce ``share`` (0..1) of the fleet's rate and burst from ``now`` on.

        The depth is at least one call (no call could pass otherwise); tokens
        are kept up to the new depth, never added.
        """
        policy = self.policy
        with self._lock:
            if self.share > 0.0:
                tokens = self.tokens(now)
            else:  # new (a full bucket), or coming back from a zero share (an empty one)
                tokens = math.inf if self._tat == -math.inf else 0.0
            self.share = share
            if share <= 0.0:
                self.rate, self.depth, self._interval = 0.0, 0.0, math.inf
                self._tolerance, self._tat = _ROUNDING, math.inf
                return
            self.rate = share * policy.limit / policy.period
            self.depth = max(1.0, share * policy.burst)
            self._interval = 1.0 / self.rate
            self._tolerance = (self.depth - 1.0) * self._interval + _ROUNDING
            self._tat = now + (self.depth - min(tokens, self.depth)) * self._interval
