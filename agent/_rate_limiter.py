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

Thread safety without a lock on the call path: ``tat`` lives in a deque of
one element, the *baton*. Deciding a reservation pops it (``deque.pop`` is
atomic: of two threads, one gets it and the other an ``IndexError``),
reads and moves it, and appends it back: two C calls where a lock costs an
acquire, a release and the loads and stores of ``tat`` around them (measured
about 60 ns less per call, docs/budgets.md, "Cost"). Nothing between the pop
and the append waits or does I/O; a thread that finds the baton taken waits
for it (``_wait_for_baton``, yielding the GIL), which only happens when two
threads decide on one bucket at the same instant, never in an asyncio agent.
The decision itself is GCRA's, so the bound is exactly the locked one's.

``admitted`` and ``refused`` count the reservations (cumulative, written only
by the baton's holder): the link reports their growth as the key's usage
(docs/budgets.md, "Reports and shares"). A pushed share (``set_share``, which
takes the baton too) replaces the rate and depth and keeps ``min(tokens, new
depth)``: a rebalance never lets a burst through.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time

from fusebox.agent.policy import RateLimitPolicy, WhenExceeded

#: Seconds of float rounding forgiven: a token due at ``t`` is there at ``t``, not 1e-13 later.
_ROUNDING = 1e-9
#: Seconds a waiter gives the baton's holder before taking it for lost (see ``_wait_for_baton``).
_LOST_BATON = 1.0
log = logging.getLogger("fusebox.agent.budgets")


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

    __slots__ = ("_baton", "_interval", "_lock", "_tolerance", "admitted", "depth", "max_wait",
                 "policy", "rate", "refused", "share")

    def __init__(self, policy: RateLimitPolicy, share: float, now: float) -> None:
        self.policy = policy
        self.max_wait = policy.max_wait if policy.when_exceeded is WhenExceeded.WAIT else 0.0
        #: ``tat`` while no thread is deciding; empty while one is (see the module doc).
        self._baton: collections.deque[float] = collections.deque((-math.inf,))  # a full bucket
        self._lock = threading.Lock()  # queues the threads waiting for the baton, nothing else
        self.share = self.rate = self.depth = 0.0
        self._interval = math.inf
        self._tolerance = 0.0  # (depth - 1) * interval, plus _ROUNDING
        #: Reservations admitted and refused since the bucket was made (read lock-free).
        self.admitted = self.refused = 0
        self.set_share(share, now)

    def reserve(self, at: float) -> float | None:
        """Book the earliest admission at or after ``at``: the wait, or None (refused)."""
        baton = self._baton
        try:
            tat = baton.pop()
        except IndexError:  # another thread is deciding on this bucket right now
            tat = self._wait_for_baton(at)
        earliest = tat - self._tolerance  # _ROUNDING early
        if earliest <= at:
            self.admitted += 1
            baton.append((tat if tat > at else at) + self._interval)
            return 0.0
        wait = earliest + _ROUNDING - at
        if wait > self.max_wait:
            self.refused += 1
            baton.append(tat)
            return None
        self.admitted += 1
        baton.append(tat + self._interval)  # tat >= earliest > at: max(tat, earliest) is tat
        return wait

    def _wait_for_baton(self, at: float) -> float:
        """Take the baton from the thread holding it, once it put it back.

        Its holder runs a few float operations between the pop and the append,
        so yielding the GIL (``time.sleep(0)``) lets it finish. Only if a holder
        never puts it back (an asynchronous exception, such as a
        KeyboardInterrupt, landed in between) is the baton taken for lost after
        ``_LOST_BATON`` seconds and made again as an empty bucket at ``at``:
        the strict side, as a lock left held would never be.
        """
        with self._lock:  # one waiter polls at a time; the others queue here
            give_up = time.monotonic() + _LOST_BATON
            while True:
                try:
                    return self._baton.pop()
                except IndexError:
                    if time.monotonic() > give_up:
                        log.warning("rate limit %s: a thread never finished its reservation; "
                                    "the bucket starts again empty", self.policy.name)
                        return at + self.depth * self._interval if self.share > 0 else math.inf
                    time.sleep(0)

    def _take(self, at: float) -> float:
        try:
            return self._baton.pop()
        except IndexError:
            return self._wait_for_baton(at)

    def next_free(self, at: float) -> float:
        """Seconds from ``at`` until a call would be admitted (inf: a zero share)."""
        tat = self._take(at)
        self._baton.append(tat)
        return max(0.0, tat - self._tolerance + _ROUNDING - at)

    def tokens(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (negative: reservations ahead)."""
        tat = self._take(now)
        self._baton.append(tat)
        return self._tokens(tat, now)

    def _tokens(self, tat: float, now: float) -> float:
        if self._interval == math.inf:
            return 0.0
        return min(self.depth, self.depth - (tat - now) / self._interval)

    def set_share(self, share: float, now: float) -> None:
        """Enforce ``share`` (0..1) of the fleet's rate and burst from ``now`` on.

        The depth is at least one call (no call could pass otherwise); tokens
        are kept up to the new depth, never added.
        """
        policy = self.policy
        tat = self._take(now)
        if self.share > 0.0:
            tokens = self._tokens(tat, now)
        else:  # new (a full bucket), or coming back from a zero share (an empty one)
            tokens = math.inf if tat == -math.inf else 0.0
        self.share = share
        if share <= 0.0:
            self.rate, self.depth, self._interval = 0.0, 0.0, math.inf
            self._tolerance = _ROUNDING
            self._baton.append(math.inf)
            return
        self.rate = share * policy.limit / policy.period
        self.depth = max(1.0, share * policy.burst)
        self._interval = 1.0 / self.rate
        self._tolerance = (self.depth - 1.0) * self._interval + _ROUNDING
        self._baton.append(now + (self.depth - min(tokens, self.depth)) * self._interval)
