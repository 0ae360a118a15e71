"""The circuit breaker state machine, with sony/gobreaker's semantics (as Dapr uses it).

``BreakerStateMachine`` is pure: no locks, no I/O. The caller passes ``now``
(seconds) to every method, or gives the machine a ``clock`` to read when it
needs the time: a closed breaker without an ``interval`` never does, so a
guarded call's success path reads no clock at all. The same algorithm runs in
the agent (each instance's own breaker), the embedded store and the Redis Lua
script; keep the three in step when changing anything here.

A ``concurrent`` machine (the agent's) also has a lock-free fast path for the
common case, closed with no ``interval`` and no quorum: ``admit_fast`` and
``succeed_fast`` are each one atomic step (a C-level ``itertools.count``
increment on the current window's counters), so many threads may call them
without the owner's lock, exactly: an admission or success counts in the
window it read, and one that lands after the window ended is stale, as an
outcome of an older generation always is. Every other method needs the
owner's lock; they fold the fast counters into the counts first.

The rules, as in gobreaker:

* ``requests`` is incremented before the call (``before_request``).
* Counts reset every ``interval`` while closed (0: never), and on every state
  change. Each reset starts a new *generation*; an outcome reported for an
  older generation is ignored.
* While closed, ``trip(counts)`` is evaluated on each failure; true opens.
* Open lasts ``timeout``; the first look after it has *passed* (strictly later
  than the expiry) sees half-open.
* Half-open admits ``max_requests`` requests; ``max_requests`` consecutive
  successes close the breaker, any failure reopens it.

One Fusebox extension, for the fleet's breakers only (the embedded store and
the Lua scripts; an agent's per-instance machine never has one): a *quorum*
(``fusebox.agent.policy.BreakerQuorum``). With one, every outcome while closed is
attributed to the instance that reported it (``instance``), and the window
keeps the set of instances that reported and the set that failed; both sets
are emptied when a new closed window starts (while open and half-open they
keep naming the instances whose failures opened it). A failure opens only
when the trip is true *and* at least ``min_instances`` instances failed *and*
failing / reporting is at least ``min_share`` (each rule when set); otherwise
the breaker stays closed and the next failure decides again. Without a quorum nothing is attributed.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fusebox.agent.policy import BreakerQuorum

#: ``trip(requests, total_successes, total_failures, consecutive_successes,
#: consecutive_failures) -> bool``; what ``fusebox.agent.trip.compile_trip`` returns.
TripFunction = Callable[[int, int, int, int, int], bool]


class BreakerState(enum.Enum):
    """Breaker states, valued with the words gobreaker (and Dapr's logs) use."""

    CLOSED = "closed"
    HALF_OPEN = "half-open"
    OPEN = "open"

    def __str__(self) -> str:
        return self.value


class TransitionCause(enum.Enum):
    """Why a breaker changed state: the one cause enum of agents, stores, server and CLI.

    Each member but ``EXTERNAL`` is a ``fusebox.v1.TransitionCause`` (the table
    is ``fusebox.agent.wire_enums.CAUSE_TO_PB``); the values are what logs,
    events, metrics labels and the Redis stream carry.

    * ``TRIP``: closed to open, the trip expression held on a failure (and the
      quorum, for a fleet breaker that has one).
    * ``TIMEOUT``: open to half-open, the open timeout passed.
    * ``PROBE_SUCCESS``: half-open to closed, ``max_requests`` probes in a row
      succeeded.
    * ``PROBE_FAILURE``: half-open to open, a probe failed.
    * ``OVERRIDE``: an operator override was set, changed, cleared or expired.
    * ``RESET``: an operator reset: closed, counts zeroed.
    * ``POLICY_CHANGE``: the breaker's policy changed under it (a valid wire
      cause for consumers; no store emits it today).
    * ``EXTERNAL``: an agent's only, never on the wire: the agent adopted the
      fleet's state from a message that carries no cause (an interest or lease
      answer), or started or stopped following the fleet.
    """

    TRIP = "trip"
    TIMEOUT = "timeout"
    PROBE_SUCCESS = "probe_success"
    PROBE_FAILURE = "probe_failure"
    OVERRIDE = "override"
    RESET = "reset"
    POLICY_CHANGE = "policy_change"
    EXTERNAL = "external"


class BreakerOverride(enum.Enum):
    """An operator's decision that wins over every state machine (= ``fusebox.v1.BreakerOverride``).

    The values are the words users see: the CLI's OVERRIDE column, its JSON
    output, logs and audit records.
    """

    FORCE_OPEN = "force-open"  # acts as open: every call fails fast
    FORCE_CLOSED = "force-closed"  # acts as closed; outcomes are not counted
    DISABLED = "disabled"  # acts as closed, and nothing is counted or reported


@dataclass(frozen=True, slots=True)
class Counts:
    """A snapshot of a breaker's counters, as the trip expression sees them."""

    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change: from, to, the generation it started, and why."""

    from_state: BreakerState
    to_state: BreakerState
    generation: int
    cause: TransitionCause
    at: float


class _QuorumWindow:
    """A quorum rule and the instance sets of the current window."""

    __slots__ = ("failing", "reporting", "rule")

    def __init__(self, rule: BreakerQuorum) -> None:
        self.rule = rule
        self.reporting: set[str] = set()  # any outcome in this window
        self.failing: set[str] = set()  # a failure in this window (a subset of reporting)

    def met(self) -> bool:
        """The rule on this window's sets (after a failure: ``reporting`` is not empty)."""
        failing = len(self.failing)
        if failing < self.rule.min_instances:
            return False
        share = self.rule.min_share
        return not share or failing / len(self.reporting) >= share

    def clear(self) -> None:
        if self.reporting:  # failing is a subset
            self.reporting.clear()
            self.failing.clear()


_Window = tuple[int, Callable[[], int], Callable[[], int], "itertools.count[int]",
                "itertools.count[int]"]


def counted(counter: itertools.count[int]) -> int:
    """How many times ``counter`` (from 0) was advanced: its repr is ``count(N)``,
    the only way to read a count without advancing it."""
    return int(repr(counter)[6:-1])


def _no_clock() -> float:
    raise TypeError("this BreakerStateMachine has no clock: pass now= to the call")


class BreakerStateMachine:
    """gobreaker's algorithm over an injected ``now``; transitions queue in ``pending``.

    >>> sm = BreakerStateMachine(max_requests=1, interval=0, timeout=60,
    ...                          trip=lambda r, ts, tf, cs, cf: cf > 1, now=0.0)
    >>> g = sm.before_request(0.0); sm.after_request(g, False, 0.0)
    >>> g = sm.before_request(0.0); sm.after_request(g, False, 0.0)
    >>> sm.state
    <BreakerState.OPEN: 'open'>
    >>> sm.before_request(1.0) is None   # rejected while open
    True
    """

    __slots__ = (
        "_cf",
        "_concurrent",
        "_cs",
        "_expiry",
        "_quorum",
        "_requests",
        "_seen_admitted",
        "_seen_succeeded",
        "_tf",
        "_ts",
        "_window",
        "clock",
        "generation",
        "interval",
        "max_requests",
        "pending",
        "state",
        "timeout",
        "trip",
    )

    def __init__(
        self,
        *,
        max_requests: int,
        interval: float,
        timeout: float,
        trip: TripFunction,
        now: float | None = None,
        quorum: BreakerQuorum | None = None,
        clock: Callable[[], float] | None = None,
        concurrent: bool = False,
    ) -> None:
        #: Read when a method is called without ``now`` (and the time matters).
        self.clock = clock or _no_clock
        if now is None:
            now = self.clock()
        self.max_requests = max(1, max_requests)
        self.interval = interval
        self.timeout = timeout
        self.trip = trip
        self.state = BreakerState.CLOSED
        self.generation = 0
        #: Transitions not yet taken by the owner (drain with ``take_transitions``).
        self.pending: list[Transition] = []
        self._requests = self._ts = self._tf = self._cs = self._cf = 0
        self._expiry: float | None = None
        self._concurrent = concurrent
        #: The fast path's window (concurrent machines, closed, no interval, no
        #: quorum): (generation, admit, succeed, admitted counter, succeeded counter).
        self._window: _Window | None = None
        self._seen_admitted = self._seen_succeeded = 0  # counter values already folded
        # With a quorum only: other breakers pay one ``is None`` per outcome.
        self._quorum: _QuorumWindow | None = None
        self.quorum = quorum
        self.generation = -1
        self._new_generation(now)

    # -- the lock-free fast path (concurrent machines) -------------------------

    def admit_fast(self) -> int | None:
        """``before_request`` while closed with no interval and no quorum: the
        generation. ``None``: not in that state (take ``before_request``).

        Safe without the owner's lock (see the module docstring).
        """
        window = self._window
        if window is None:
            return None
        window[1]()
        return window[0]

    def succeed_fast(self, generation: int) -> bool:
        """``after_request(generation, True)`` in the fast path's state; False when
        not there or ``generation`` is not the window's (take ``after_request``).

        Safe without the owner's lock (see the module docstring).
        """
        window = self._window
        if window is None or window[0] != generation:
            return False
        window[2]()
        return True

    # -- the two calls around a guarded operation ------------------------------

    def before_request(self, now: float | None = None) -> int | None:
        """Admit a request: its generation, or ``None`` when rejected (see ``state``)."""
        generation = self.admit_fast()
        if generation is not None:
            return generation
        self._refresh(self.clock() if now is None else now)
        state = self.state
        if state is BreakerState.OPEN:
            return None
        if state is BreakerState.HALF_OPEN and self._requests >= self.max_requests:
            return None
        self._requests += 1
        return self.generation

    def after_request(
        self, generation: int, success: bool, now: float | None = None, instance: str = ""
    ) -> None:
        """Record the outcome of a request admitted in ``generation``.

        ``instance`` (the instance that made the call) matters only with a
        quorum, while closed.
        """
        if success and self.succeed_fast(generation):
            return
        self._fold()
        if now is None:
            now = self.clock()
        self._refresh(now)
        if generation != self.generation:
            return  # the window or the state changed while the call ran
        if success:
            self._ts += 1
            self._cs += 1
            self._cf = 0
            if self.state is BreakerState.HALF_OPEN:
                if self._cs >= self.max_requests:
                    self._set_state(BreakerState.CLOSED, now, TransitionCause.PROBE_SUCCESS)
            elif self._quorum is not None:  # closed, with a quorum: attribute it
                self._quorum.reporting.add(instance)
        elif self.state is BreakerState.CLOSED:
            self._tf += 1
            self._cf += 1
            self._cs = 0
            quorum = self._quorum
            if quorum is not None:
                quorum.reporting.add(instance)
                quorum.failing.add(instance)
            if self.trip(self._requests, self._ts, self._tf, self._cs, self._cf) and (
                quorum is None or quorum.met()
            ):
                self._set_state(BreakerState.OPEN, now, TransitionCause.TRIP)
        elif self.state is BreakerState.HALF_OPEN:
            self._set_state(BreakerState.OPEN, now, TransitionCause.PROBE_FAILURE)

    def record_successes(self, count: int, now: float, instance: str = "") -> None:
        """``count`` admitted-and-succeeded requests at ``now``, in bulk.

        Exactly ``count`` ``before_request``/``after_request(success)`` pairs:
        while closed a success never changes the state, so after the first pair
        the rest are plain increments (the server applies reports this way).
        Outside closed it falls back to the pairs one by one.
        """
        remaining = count
        while remaining > 0:
            generation = self.before_request(now)
            if generation is None:
                return
            self.after_request(generation, True, now, instance)
            remaining -= 1
            if self.state is BreakerState.CLOSED and generation == self.generation:
                self._requests += remaining
                self._ts += remaining
                self._cs += remaining
                return

    # -- inspection ---------------------------------------------------------------

    def current_state(self, now: float | None = None) -> BreakerState:
        """The state at ``now`` (applies an expired open timeout or interval)."""
        if self._window is None:
            self._refresh(self.clock() if now is None else now)
        return self.state

    def admits(self, now: float | None = None) -> bool:
        """Whether ``before_request`` at ``now`` would admit a request (it changes
        nothing but what time alone changes: an expired window or open timeout)."""
        state = self.current_state(now)
        if state is BreakerState.HALF_OPEN:
            return self._requests < self.max_requests
        return state is BreakerState.CLOSED

    @property
    def counts(self) -> Counts:
        self._fold()
        return Counts(self._requests, self._ts, self._tf, self._cs, self._cf)

    @property
    def expiry(self) -> float | None:
        """When the closed window resets or the open timeout ends (``None``: never)."""
        return self._expiry

    @property
    def quorum(self) -> BreakerQuorum | None:
        """The fleet quorum (``None``: none, Dapr's behaviour).

        Setting it empties the instance sets (they start again from the next
        outcome) but leaves the counts: whoever changes the rule decides
        whether the window restarts too (``restart_window``).
        """
        return None if self._quorum is None else self._quorum.rule

    @quorum.setter
    def quorum(self, quorum: BreakerQuorum | None) -> None:
        self._fold()
        self._quorum = None if quorum is None else _QuorumWindow(quorum)
        self._open_window()

    @property
    def failing_instances(self) -> frozenset[str]:
        """With a quorum, while closed: the instances with a failure in this window.

        Always empty without a quorum.
        """
        return frozenset(() if self._quorum is None else self._quorum.failing)

    @property
    def reporting_instances(self) -> frozenset[str]:
        """With a quorum, while closed: the instances with any outcome in this window."""
        return frozenset(() if self._quorum is None else self._quorum.reporting)

    def restart_window(self, now: float) -> None:
        """While closed: counts and instance sets to zero, a new window from ``now``.

        For a rule change (trip, interval, quorum) that makes the counts of
        the running window meaningless. No transition (it is not a state change).
        """
        if self.state is BreakerState.CLOSED:
            self._new_generation(now)

    def take_transitions(self) -> list[Transition]:
        """Remove and return the transitions queued since the last call."""
        pending = self.pending
        if not pending:
            return pending
        self.pending = []
        return pending

    # -- outside decisions ------------------------------------------------------

    def reset(self, now: float | None = None) -> None:
        """An operator's reset: closed, a new window with zero counts.

        A change of state is queued as a transition with cause ``RESET``.
        """
        if now is None:
            now = self.clock()
        previous = self.state
        self.state = BreakerState.CLOSED
        self._new_generation(now)
        if previous is not BreakerState.CLOSED:
            self.pending.append(Transition(previous, BreakerState.CLOSED, self.generation,
                                           TransitionCause.RESET, now))

    def give_back_requests(self, count: int) -> None:
        """Half-open: ``count`` admitted requests will never report (their probe
        leases expired); their slots may admit others."""
        if self.state is BreakerState.HALF_OPEN:
            self._requests = max(0, self._requests - count)

    # -- internals ----------------------------------------------------------------

    def _refresh(self, now: float) -> None:
        expiry = self._expiry
        if expiry is None or not expiry < now:
            return
        if self.state is BreakerState.CLOSED:
            self._new_generation(now)
        elif self.state is BreakerState.OPEN:
            self._set_state(BreakerState.HALF_OPEN, now, TransitionCause.TIMEOUT)

    def _set_state(self, state: BreakerState, now: float, cause: TransitionCause) -> None:
        if state is self.state:
            return
        previous = self.state
        self.state = state
        self._new_generation(now)
        self.pending.append(Transition(previous, state, self.generation, cause, now))

    def _new_generation(self, now: float) -> None:
        self.generation += 1
        self._requests = self._ts = self._tf = self._cs = self._cf = 0
        self._expiry = self._default_expiry(now)
        if self._quorum is not None and self.state is BreakerState.CLOSED:
            self._quorum.clear()  # open/half-open keep the instances that opened it
        self._open_window()  # fast-path counts of the old generation are dropped with it

    def _open_window(self) -> None:
        """The fast path's window for the current generation, when its state allows one."""
        if (self._concurrent and self.state is BreakerState.CLOSED and self._expiry is None
                and self._quorum is None):
            admitted, succeeded = itertools.count(), itertools.count()
            self._seen_admitted = self._seen_succeeded = 0
            self._window = (self.generation, admitted.__next__, succeeded.__next__,
                            admitted, succeeded)
        else:
            self._window = None

    def _fold(self) -> None:
        """Add what the fast path counted since the last fold to the counts."""
        window = self._window
        if window is None:
            return
        admitted, succeeded = counted(window[3]), counted(window[4])
        self._requests += admitted - self._seen_admitted
        self._seen_admitted = admitted
        successes = succeeded - self._seen_succeeded
        if successes:
            self._seen_succeeded = succeeded
            self._ts += successes
            self._cs += successes
            self._cf = 0

    def _default_expiry(self, now: float) -> float | None:
        if self.state is BreakerState.CLOSED:
            return now + self.interval if self.interval > 0 else None
        if self.state is BreakerState.OPEN:
            return now + self.timeout
        return None
