"""One instance's share of a retry budget: retries over first attempts in a window.

Time is cut into ``SLOTS`` slots of ``window / SLOTS``. A retry asked for at
``now`` is allowed when, over the current slot and the ``SLOTS - 1`` before
it, ``retries + 1 <= ratio * first_attempts + share * min_retries_per_second
* window`` (docs/budgets.md has the bound this gives).

Counting first attempts is on the hot path of every call, so it takes no
lock: each slot's count is an ``itertools.count`` whose ``__next__`` is one
atomic C call, and the lock is taken only when a slot ends (once per
``window / SLOTS``) and on retries. A race between threads at a slot's end
can lose a count, never add one: the budget only ever errs on the strict side.

``totals()`` reads the cumulative counts the link reports as the key's usage
(first attempts, retries made, retries skipped; docs/budgets.md, "Reports and
shares"), without a single step on the call path of its own.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable

from fusebox.agent.policy import RetryBudgetPolicy

SLOTS = 10


def _value(counter: itertools.count[int]) -> int:
    # repr(count(7)) == "count(7)": the only public way to read a count.
    return int(repr(counter)[6:-1])


class RetryBudget:
    """A retry budget for ``share`` of ``policy``'s fleet-wide floor (thread-safe).

    ``first_attempt(now)`` counts a first attempt; ``allow_retry(now)`` counts
    a retry and says whether it may be made; ``refund()`` gives back the last
    one when the retry was not made after all.

    >>> budget = RetryBudget(RetryBudgetPolicy("b", 0.5, 10.0, 0.0), share=1.0, now=0.0)
    >>> for _ in range(4):
    ...     budget.first_attempt(1.0)
    >>> [budget.allow_retry(2.0) for _ in range(3)]
    [True, True, False]
    """

    __slots__ = ("_closed_firsts", "_current", "_epoch", "_firsts", "_lock", "_retries",
                 "_retries_made", "_skipped", "_width", "count_first", "floor", "policy", "share",
                 "slot_end")

    def __init__(self, policy: RetryBudgetPolicy, share: float, now: float) -> None:
        self.policy = policy
        self._width = policy.window / SLOTS
        self._lock = threading.Lock()
        self._firsts = [0] * SLOTS  # closed slots' first attempts, by epoch % SLOTS
        self._retries = [0] * SLOTS  # every slot's retries (counted under the lock)
        self._epoch = math.floor(now / self._width)
        #: When the current slot ends (``first_attempt`` rolls the window past it).
        self.slot_end = (self._epoch + 1) * self._width
        self._current: itertools.count[int] = itertools.count()
        #: Counts a first attempt in the current slot: one atomic C call.
        self.count_first: Callable[[], object] = self._current.__next__
        self.share = self.floor = 0.0
        # Cumulative, under the lock: first attempts of closed slots, retries made, skipped.
        self._closed_firsts = self._retries_made = self._skipped = 0
        self.set_share(share)

    def first_attempt(self, now: float) -> None:
        """Count a first attempt made at ``now`` (the hot path: no lock).

        The call drivers (``fusebox.agent._executor``) inline these three lines.
        """
        if now >= self.slot_end:
            self.roll(now)
        self.count_first()

    def allow_retry(self, now: float) -> bool:
        """Whether a retry at ``now`` fits the budget; if so, it is counted."""
        with self._lock:
            self._roll_locked(now)
            firsts = sum(self._firsts) + _value(self._current)
            retries = sum(self._retries)
            if retries + 1 > self.policy.ratio * firsts + self.floor:
                self._skipped += 1
                return False
            self._retries[self._epoch % SLOTS] += 1
            self._retries_made += 1
            return True

    def refund(self) -> None:
        """Give back the last retry allowed (it was not made): a slot that ended keeps it."""
        with self._lock:
            slot = self._epoch % SLOTS
            if self._retries[slot]:
                self._retries[slot] -= 1
            self._retries_made -= 1

    def set_share(self, share: float) -> None:
        """Enforce ``share`` (0..1) of the fleet-wide floor; the ratio is never divided."""
        self.share = share
        self.floor = share * self.policy.min_retries_per_second * self.policy.window

    def totals(self) -> tuple[int, int, int]:
        """(first attempts, retries made, retries skipped) since the budget was made."""
        with self._lock:
            return (self._closed_firsts + _value(self._current), self._retries_made,
                    self._skipped)

    def roll(self, now: float) -> None:
        """Close the slots that ended before ``now``."""
        with self._lock:
            self._roll_locked(now)

    def _roll_locked(self, now: float) -> None:
        """Close the slots that ended before ``now`` (the lock is held)."""
        if now < self.slot_end:
            return
        epoch = math.floor(now / self._width)
        old = self._epoch
        closing = _value(self._current)
        self._firsts[old % SLOTS] = closing
        self._closed_firsts += closing
        # The slots between the old one and the new one saw nothing (at most all of them).
        for passed in range(old + 1, min(epoch, old + SLOTS) + 1):
            self._firsts[passed % SLOTS] = 0
            self._retries[passed % SLOTS] = 0
        if epoch - old >= SLOTS:  # the old slot is out of the window too
            self._firsts[old % SLOTS] = self._retries[old % SLOTS] = 0
        self._firsts[epoch % SLOTS] = 0  # the current slot lives in its counter
        self._current = itertools.count()
        self.count_first = self._current.__next__
        self._epoch = epoch
        self.slot_end = (epoch + 1) * self._width
