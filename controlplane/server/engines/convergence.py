"""How long a change takes to reach every agent that must apply it (convergence).

As Istio's ``pilot_proxy_convergence_time``, measured per change, from the
change to the *last* agent answering that it applied it:

* a breaker transition: from the transition's time (``BreakerEvent.at``) to
  the last ``BreakerAck`` of the sessions that held the breaker when the
  update was offered (agents that do not ack, those predating acks, are not
  waited for);
* a policy snapshot: from the moment this replica saw the spec change to the
  last ``PolicyAck`` of the sessions it offered the new snapshot to.

A session is not waited for once it is gone (disconnected) or, for a breaker,
no longer holds it; the change then converged when the last session still
waited for answered. An answer covers older changes of the same subject too:
an ack of generation 7 answers 5 and 6 (the server coalesces unsent updates,
so an agent may never see 5), a policy ack answers the snapshots offered to
that session before the one it names.

Memory is bounded: a change not converged after ``deadline`` seconds, or
pushed out by more than ``max_pending`` newer ones, is dropped and counted as
``expired``. Changes that end without an observation are counted by reason:
``expired``, ``nacked`` (a session refused the snapshot), ``abandoned`` (every
session waited for left before answering).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

from fusebox.controlplane.server.engines.sessions import AgentSession

S = TypeVar("S", bound=Hashable)  # what changes: a breaker key, an app
V = TypeVar("V", int, str)  # its version: a generation (ordered), a digest

DEFAULT_DEADLINE = 30.0  # seconds
DEFAULT_MAX_PENDING = 2048  # changes being waited for, per kind

EXPIRED, NACKED, ABANDONED = "expired", "nacked", "abandoned"


class _Pending(Generic[S, V]):
    """One change being waited for."""

    __slots__ = ("deadline", "last_answer", "nacked", "observe", "started_at", "subject",
                 "version", "waiting")

    def __init__(self, subject: S, version: V, started_at: float, deadline: float,
                 waiting: set[AgentSession], observe: Callable[[float], None]) -> None:
        self.subject: S = subject
        self.version: V = version
        self.started_at, self.deadline = started_at, deadline
        self.waiting = waiting
        self.observe = observe
        self.last_answer: float | None = None
        self.nacked = False


class ConvergenceTracker(Generic[S, V]):
    """The changes of one kind being waited for (see the module docstring).

    ``ordered``: versions are ordered (generations), and an answer for ``v``
    covers every change up to ``v``; otherwise (digests) an answer covers the
    change that carried that version and the ones offered before it.
    ``unfinished(reason)`` is called for a change that ends unobserved.
    Every method runs on the server's event loop.
    """

    def __init__(
        self,
        *,
        ordered: bool,
        unfinished: Callable[[str], None] = lambda reason: None,
        deadline: float = DEFAULT_DEADLINE,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ordered = ordered
        self._unfinished = unfinished
        self._deadline = deadline
        self._max_pending = max_pending
        self._clock, self._monotonic = clock, monotonic
        #: Pending changes per subject, in the order they were offered.
        self._by_subject: dict[S, list[_Pending[S, V]]] = {}
        #: Every pending change, oldest first (deadlines follow the same order).
        self._all: collections.OrderedDict[_Pending[S, V], None] = collections.OrderedDict()
        self._by_session: dict[AgentSession, set[_Pending[S, V]]] = {}

    @property
    def pending(self) -> int:
        return len(self._all)

    def offered(
        self, subject: S, version: V, started_at: float, sessions: Iterable[AgentSession],
        observe: Callable[[float], None],
    ) -> None:
        """``version`` of ``subject`` was offered to ``sessions`` (changed at
        ``started_at``, unix seconds): wait for their answers, then ``observe``
        the seconds from the change to the last answer."""
        waiting = {s for s in sessions if not s.closed}
        if not waiting:
            return
        self.expire()
        change: _Pending[S, V] = _Pending(subject, version, started_at,
                                          self._monotonic() + self._deadline, waiting, observe)
        self._by_subject.setdefault(subject, []).append(change)
        self._all[change] = None
        for session in waiting:
            self._by_session.setdefault(session, set()).add(change)
        while len(self._all) > self._max_pending:
            self._end(next(iter(self._all)), EXPIRED)

    def answered(self, session: AgentSession, subject: S, version: V,
                 accepted: bool = True) -> None:
        """``session`` holds ``version`` of ``subject`` (or refused it: ``accepted``
        False, a policy NACK)."""
        changes = self._by_subject.get(subject)
        if not changes:
            return
        last = self._covered_up_to(changes, version)
        if last < 0:
            return
        now = self._clock()
        for change in changes[:last + 1]:
            if session not in change.waiting:
                continue
            if accepted:
                change.last_answer = now
            else:
                change.nacked = True
            self._release(change, session)

    def forget(self, session: AgentSession, subjects: Iterable[S] | None = None) -> None:
        """Stop waiting for ``session`` (gone), or only for its ``subjects`` (no
        longer held)."""
        changes = self._by_session.get(session)
        if not changes:
            return
        if subjects is not None:
            wanted = set(subjects)
            changes = {c for c in changes if c.subject in wanted}
        for change in list(changes):
            self._release(change, session)

    def expire(self) -> int:
        """Drop the changes past their deadline; how many."""
        now = self._monotonic()
        expired = 0
        while self._all:
            oldest = next(iter(self._all))
            if oldest.deadline > now:
                break
            self._end(oldest, EXPIRED)
            expired += 1
        return expired

    # -- internals ---------------------------------------------------------------

    def _covered_up_to(self, changes: list[_Pending[S, V]], version: V) -> int:
        """The index of the newest change ``version`` answers, or -1."""
        for i in range(len(changes) - 1, -1, -1):
            offered = changes[i].version
            if offered == version or (self._ordered and offered < version):
                return i
        return -1

    def _release(self, change: _Pending[S, V], session: AgentSession) -> None:
        change.waiting.discard(session)
        held = self._by_session.get(session)
        if held is not None:
            held.discard(change)
            if not held:
                del self._by_session[session]
        if not change.waiting:
            self._end(change, None)

    def _end(self, change: _Pending[S, V], reason: str | None) -> None:
        """Take ``change`` out of every index; observe it, or count why not."""
        self._all.pop(change, None)
        changes = self._by_subject.get(change.subject)
        if changes is not None:
            changes.remove(change)
            if not changes:
                del self._by_subject[change.subject]
        for session in change.waiting:
            held = self._by_session.get(session)
            if held is not None:
                held.discard(change)
                if not held:
                    del self._by_session[session]
        change.waiting = set()
        if reason is None:
            if change.nacked:
                reason = NACKED
            elif change.last_answer is None:
                reason = ABANDONED
        if reason is None and change.last_answer is not None:
            change.observe(max(0.0, change.last_answer - change.started_at))
        else:
            self._unfinished(reason or ABANDONED)
