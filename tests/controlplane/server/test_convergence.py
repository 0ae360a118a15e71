"""Convergence tracking on its own: who is waited for, what an answer covers, bounds.

Clocks are fakes: ``clock`` is the wall clock changes and answers are timed
with, ``monotonic`` the one deadlines run on.
"""

from __future__ import annotations

import pytest

from fusebox.controlplane.server.engines.convergence import ConvergenceTracker
from fusebox.controlplane.server.engines.sessions import AgentSession


class Clocks:
    def __init__(self) -> None:
        self.now = 1000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 900.0


class Recorded:
    def __init__(self, ordered: bool = True, deadline: float = 30.0,
                 max_pending: int = 100) -> None:
        self.clocks = Clocks()
        self.observed: list[float] = []
        self.unfinished: list[str] = []
        self.tracker: ConvergenceTracker[str, int] = ConvergenceTracker(
            ordered=ordered, unfinished=self.unfinished.append, deadline=deadline,
            max_pending=max_pending, clock=self.clocks.wall, monotonic=self.clocks.monotonic,
        )

    def offer(self, version: int, *sessions: AgentSession, subject: str = "b",
              started_ago: float = 0.0) -> None:
        self.tracker.offered(subject, version, self.clocks.now - started_ago, sessions,
                             self.observed.append)

    def at(self, seconds: float) -> Recorded:
        self.clocks.now += seconds
        return self


def session(n: int) -> AgentSession:
    return AgentSession("default", "checkout", f"checkout-{n}", "test")


def test_a_change_is_observed_when_the_last_session_answers() -> None:
    r = Recorded()
    a, b = session(1), session(2)
    r.offer(5, a, b, started_ago=0.002)
    r.at(0.010).tracker.answered(a, "b", 5)
    assert r.observed == []
    r.at(0.020).tracker.answered(b, "b", 5)
    assert r.observed == [pytest.approx(0.032)]
    assert r.tracker.pending == 0


def test_a_newer_generation_answers_the_older_changes_it_overtook() -> None:
    r = Recorded()
    a = session(1)
    r.offer(5, a)
    r.offer(6, a)
    r.at(0.01).tracker.answered(a, "b", 7)  # the server coalesced 5 and 6 away
    assert len(r.observed) == 2 and r.tracker.pending == 0


def test_an_older_answer_does_not_count_for_a_newer_change() -> None:
    r = Recorded()
    a = session(1)
    r.offer(5, a)
    r.offer(6, a)
    r.at(0.01).tracker.answered(a, "b", 5)
    assert len(r.observed) == 1 and r.tracker.pending == 1


def test_digests_answer_their_change_and_those_offered_before_it() -> None:
    r = Recorded(ordered=False)
    tracker: ConvergenceTracker[str, str] = ConvergenceTracker(
        ordered=False, clock=r.clocks.wall, monotonic=r.clocks.monotonic)
    observed: list[float] = []
    a = session(1)
    for digest in ("d1", "d2", "d3"):
        tracker.offered("app", digest, r.clocks.now, [a], observed.append)
    tracker.answered(a, "app", "d2")
    assert len(observed) == 2 and tracker.pending == 1
    tracker.answered(a, "app", "unknown")
    assert tracker.pending == 1
    tracker.answered(a, "app", "d3")
    assert len(observed) == 3


def test_a_session_that_leaves_is_not_waited_for_and_the_last_answer_counts() -> None:
    r = Recorded()
    a, b = session(1), session(2)
    r.offer(5, a, b)
    r.at(0.01).tracker.answered(a, "b", 5)
    r.at(5.0).tracker.forget(b)
    assert r.observed == [pytest.approx(0.01)]


def test_a_session_dropping_the_breaker_is_not_waited_for_on_it_only() -> None:
    r = Recorded()
    a, b = session(1), session(2)
    r.offer(5, a, b, subject="x")
    r.offer(3, a, b, subject="y")
    r.tracker.answered(a, "x", 5)
    r.tracker.answered(a, "y", 3)
    r.tracker.forget(b, ["x"])
    assert len(r.observed) == 1 and r.tracker.pending == 1


def test_a_change_nobody_answered_before_leaving_is_abandoned() -> None:
    r = Recorded()
    a = session(1)
    r.offer(5, a)
    r.tracker.forget(a)
    assert r.observed == [] and r.unfinished == ["abandoned"]


def test_a_nack_ends_the_change_unobserved() -> None:
    r = Recorded()
    a, b = session(1), session(2)
    r.offer(5, a, b)
    r.tracker.answered(a, "b", 5, accepted=False)
    r.tracker.answered(b, "b", 5)
    assert r.observed == [] and r.unfinished == ["nacked"]


def test_changes_past_the_deadline_expire_and_are_counted() -> None:
    r = Recorded(deadline=30.0)
    a = session(1)
    r.offer(5, a)
    r.at(10.0).offer(6, a, subject="other")
    assert r.at(25.0).tracker.expire() == 1
    assert r.unfinished == ["expired"] and r.tracker.pending == 1
    r.tracker.answered(a, "b", 5)  # too late: nothing to observe
    assert r.observed == []


def test_pending_changes_are_bounded_the_oldest_expiring_first() -> None:
    r = Recorded(max_pending=3)
    a = session(1)
    for generation in range(1, 6):
        r.offer(generation, a, subject=f"b{generation}")
    assert r.tracker.pending == 3 and r.unfinished == ["expired", "expired"]
    r.tracker.answered(a, "b1", 1)
    assert r.observed == []
    r.tracker.answered(a, "b5", 5)
    assert len(r.observed) == 1


def test_closed_sessions_and_empty_offers_are_not_tracked() -> None:
    r = Recorded()
    gone = session(1)
    gone.close()
    r.offer(5, gone)
    r.offer(6)
    assert r.tracker.pending == 0 and r.unfinished == []
