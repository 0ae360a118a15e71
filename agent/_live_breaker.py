"""One live circuit breaker: the instance's own machine and the fleet's view, side by side.

A ``Breaker`` holds two things (docs/agent.md, "Local-first, fleet-wide"):

* ``local``: Dapr's per-instance algorithm (``BreakerStateMachine``) fed with
  this instance's own outcomes, always, connected or not. It opens on the
  very failure that crosses the trip, with no round trip.
* ``fleet``: the fleet's state as the control plane last pushed it
  (``FleetView``), while the agent follows the cluster; ``None`` otherwise.

A call is admitted only when both admit it, so the agent is never looser
than a per-instance breaker fed the same outcomes; the fleet view adds what
other instances saw. Operator overrides are the one exception, by design:
force-open rejects, force-closed and disabled admit, whatever ``local`` says
(``local`` is frozen meanwhile: neither asked nor fed). A reset restarts both.

``acquire()`` returns a *token* that ``release(token, success)`` takes back.
A token packs the fleet generation the call was admitted under (reported
with its outcome, so the server can drop outcomes of an older generation)
and the local generation (so ``local`` ignores outcomes of a window that
ended meanwhile): ``fleet_generation << 32 | local_generation``. Half-open
probes holding a fleet lease get negative tokens instead.

While reporting, every call refused is counted in ``outcomes.rejected``
(under the lock, on the refusing paths only: the closed fast path is never
one), and reported with the next flush for the server's per-target rates.
"""

from __future__ import annotations

import itertools
import threading
import time

from fusebox.agent._cluster_port import ClusterPort, LeaseAnswer, ProbeLeaseRequired
from fusebox.agent._errors import BreakerOpenError
from fusebox.agent._reporting import CodeRun, OutcomeAccumulator
from fusebox.agent.breaker import (
    BreakerOverride,
    BreakerState,
    BreakerStateMachine,
    Counts,
    TransitionCause,
    TripFunction,
)
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.clock import SYSTEM_CLOCK, Clock
from fusebox.agent.events import ChangeOrigin, EventHooks, StateChangeEvent
from fusebox.agent.policy import CircuitBreakerPolicy

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN

_LOCAL_BITS = 32
_LOCAL_MASK = (1 << _LOCAL_BITS) - 1
#: The local generation of a call admitted by a force-closed override: ``local``
#: never has it, so the outcome is not counted there (it is still reported).
_UNCOUNTED = _LOCAL_MASK
# Probe calls hold a negative token: release() tells them apart.
_probe_tokens = itertools.count(1)
#: ``_admit`` answers this when the fleet is half-open and a lease must be asked.
_NEEDS_LEASE = -1

_RANK = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
_BY_RANK = (CLOSED, HALF_OPEN, OPEN)

Changes = list[StateChangeEvent] | None


class FleetView:
    """The fleet's state of one breaker, as last pushed by the control plane.

    ``open_until`` is on the agent's monotonic clock; past it the view turns
    half-open by itself, as the server's timer does. ``unleased`` counts the
    probes admitted in this half-open period without a lease answer (the
    local fallback admits at most ``maxRequests`` of them). ``held``: the
    agent stopped following the cluster while the fleet was open; the view
    keeps rejecting until ``open_until`` and is then dropped.
    """

    __slots__ = ("generation", "held", "open_until", "override", "state", "unleased")

    def __init__(self) -> None:
        self.state = CLOSED
        self.generation = 0
        self.open_until: float | None = None
        self.override: BreakerOverride | None = None
        self.unleased = 0
        self.held = False


class Breaker:
    """One circuit breaker of an agent (see the module docstring); thread-safe.

    ``acquire()`` before the call (raises ``BreakerOpenError``, or
    ``ProbeLeaseRequired`` in fleet half-open) returns the token to hand back
    to ``release(token, success)`` afterwards. ``state`` is the effective
    state: the stricter of ``local`` and ``fleet``, or what an override says.
    """

    __slots__ = (
        "_clear", "_hooks", "_leases", "_lock", "_now", "_token_base", "cluster", "evicted",
        "fleet", "key", "last_used", "local", "name", "outcomes", "policy", "reporting",
        "reports_rejected", "state",
    )

    def __init__(
        self,
        name: str,
        policy: CircuitBreakerPolicy,
        trip: TripFunction,
        clock: Clock,
        hooks: EventHooks,
        key: BreakerKey | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._now = time.monotonic if clock is SYSTEM_CLOCK else clock.monotonic
        self._hooks = hooks
        self._lock = threading.Lock()
        #: This instance's own breaker: Dapr's algorithm on this agent's outcomes.
        self.local = BreakerStateMachine(
            max_requests=policy.max_requests, interval=policy.interval,
            timeout=policy.timeout, trip=trip, clock=self._now, concurrent=True,
        )
        #: The fleet's state while following the cluster (None: local only).
        self.fleet: FleetView | None = None
        #: The effective state, as the last StateChangeEvent said.
        self.state = CLOSED
        #: True while ``local`` alone decides (no fleet view, or a closed one, no
        #: override): ``acquire`` then takes the short path.
        self._clear = True
        self._token_base = 0  # fleet generation << _LOCAL_BITS
        #: Set when the LRU dropped this breaker; holders must look it up again.
        self.evicted = False
        self.last_used = 0
        #: The identity shared with every agent of the fleet (None: local only).
        self.key = key
        self.cluster: ClusterPort | None = None
        #: Outcomes not yet reported, kept while ``reporting`` (following the fleet,
        #: the key known, reports not refused, no disabled override).
        self.outcomes = OutcomeAccumulator()
        self.reporting = False
        self.reports_rejected = False
        self._leases: dict[int, tuple[str, int, int]] = {}  # token -> lease, fleet gen, local gen

    @property
    def override(self) -> BreakerOverride | None:
        """The operator override in force (pushed by the control plane), if any."""
        fleet = self.fleet
        return None if fleet is None else fleet.override

    # -- around a call ---------------------------------------------------------------

    def acquire(self) -> int:
        """Admit one request: its token. Raises ``BreakerOpenError`` when rejected.

        In fleet half-open, raises ``ProbeLeaseRequired`` instead (once
        ``local`` would admit the call): the caller then asks for a lease
        with ``acquire_probe`` / ``acquire_probe_async``.
        """
        if self._clear:  # local alone decides: its lock-free fast path, if it applies
            generation = self.local.admit_fast()
            if generation is not None:
                return self._token_base | generation
        # The lock is taken by hand: ``with`` costs twice as much.
        lock = self._lock
        lock.acquire()
        try:
            local = self.local
            if self._clear:
                generation = local.before_request()
                if not local.pending:
                    if generation is not None:
                        return self._token_base | generation
                    if self.reporting:
                        self.outcomes.rejected += 1
                    raise BreakerOpenError(self.name, local.state.value)
                token = None if generation is None else self._token_base | generation
            else:
                token = self._admit(self._now())
            if token is None and self.reporting:
                self.outcomes.rejected += 1
            state = self.state
            changes = self._settle()
        finally:
            lock.release()
        if changes:
            self._publish(changes)
        if token == _NEEDS_LEASE:
            raise ProbeLeaseRequired(self)
        if token is None:
            raise BreakerOpenError(self.name, state.value)
        return token

    def acquire_probe(self) -> int:
        """Admit a fleet half-open probe: a lease, asked for from this thread.

        This is the only network wait on a call path; it lasts at most the
        lease deadline. Granted: the call runs as the lease's probe. Refused:
        ``BreakerOpenError``. No answer in time (or no server): this instance
        admits at most ``maxRequests`` probes of its own in this half-open period.
        """
        cluster, key, generation = self._lease_request()
        if cluster is None or key is None:
            return self._admit_with(None)
        return self._admit_with(cluster.lease_sync(key, generation))

    async def acquire_probe_async(self) -> int:
        """``acquire_probe`` for coroutines: the lease is awaited."""
        cluster, key, generation = self._lease_request()
        if cluster is None or key is None:
            return self._admit_with(None)
        return self._admit_with(await cluster.lease_async(key, generation))

    def release(self, token: int, success: bool) -> None:
        """Report the outcome of a request admitted with ``token``."""
        if success and token >= 0 and self.local.succeed_fast(token & _LOCAL_MASK):
            counting = self.outcomes.success  # the closed-success path: lock-free
            if counting is not None:
                if counting[0] == token >> _LOCAL_BITS:
                    counting[1]()
                else:  # admitted under an older fleet generation: its own run
                    self._report(token >> _LOCAL_BITS << 1 | 1)
            return
        lock = self._lock
        lock.acquire()
        try:
            probe = None
            if token >= 0:
                local = self.local
                local.after_request(token & _LOCAL_MASK, success)
                if self.reporting:
                    self.outcomes.add(token >> _LOCAL_BITS << 1 | success)
                if success and not local.pending:
                    return  # the closed-success path: nothing else to do
            else:
                probe = self._leases.pop(token, None)
                if probe is not None:
                    self.local.after_request(probe[2], success)
            changes = self._settle()
            cluster, key = self.cluster, self.key
        finally:
            lock.release()
        if changes:
            self._publish(changes)
        if cluster is not None and key is not None:
            if probe is not None:
                cluster.report_probe(key, probe[0], probe[1], success)
            elif not success:
                # Failures are reported at once (wakes coalesce to one per flush):
                # the fleet's trip must not wait for a report tick.
                cluster.wake()

    # -- inspection ------------------------------------------------------------------

    def observe(self) -> BreakerState:
        """The effective state now (an open side past its timeout reads as half-open)."""
        with self._lock:
            now = self._now()
            self.local.current_state(now)
            self._fleet_timers(now)
            state_changes = self._settle()
            state = self.state
        if state_changes:
            self._publish(state_changes)
        return state

    def snapshot_counts(self) -> Counts:
        """This instance's own counters (``local``), read under the lock."""
        with self._lock:
            return self.local.counts

    # -- the fleet seam ----------------------------------------------------------------

    def apply_fleet(
        self,
        state: BreakerState,
        generation: int,
        open_remaining: float | None = None,
        override: BreakerOverride | None = None,
        cause: TransitionCause | None = None,
    ) -> bool:
        """Take the fleet's state from a ``BreakerUpdate``; False if stale, repeated or
        not following.

        An update older than the fleet generation held is ignored. A reset
        (``cause`` RESET) also restarts ``local`` closed with zero counts.
        """
        with self._lock:
            fleet = self.fleet
            if fleet is None or fleet.held or generation < fleet.generation or (
                generation == fleet.generation and generation > 0
                and state is fleet.state and override is fleet.override
            ):
                return False
            now = self._now()
            if override is not fleet.override and cause is None:
                cause = TransitionCause.OVERRIDE  # e.g. learned from an interest answer
            if state is not HALF_OPEN or fleet.state is not HALF_OPEN:
                fleet.unleased = 0  # a new half-open period (or none)
            fleet.state = state
            fleet.generation = generation
            fleet.override = override
            fleet.open_until = None
            if state is OPEN and override is None:
                fleet.open_until = now + (
                    self.policy.timeout if open_remaining is None else open_remaining
                )
            if cause is TransitionCause.RESET:
                self.local.reset(now)
                self.local.take_transitions()  # reported below as the operator's change
            self._token_base = generation << _LOCAL_BITS
            self._update_reporting()
            operator = cause in (TransitionCause.OVERRIDE, TransitionCause.RESET)
            changes = self._settle(
                ChangeOrigin.OPERATOR if operator else ChangeOrigin.FLEET,
                cause or TransitionCause.EXTERNAL, generation,
            )
        if changes:
            self._publish(changes)
        return True

    def follow(self, cluster: ClusterPort | None) -> None:
        """Follow ``cluster`` (a fresh, closed fleet view until the server answers)
        or stop following (None).

        ``local`` is untouched either way: it has been deciding all along (a
        probe still running keeps its lease entry so that its outcome reaches
        ``local``, and the fleet too if the agent follows it again by then:
        leases are fleet-wide). A new connection may report
        again what the last one refused. Stopping drops unreported outcomes
        and any override; a fleet that was open keeps rejecting until its
        open time ends (the view is ``held``), then only ``local`` decides.
        """
        with self._lock:
            self.cluster = cluster
            fleet = self.fleet
            if cluster is not None:
                self.fleet = FleetView()
                self.reports_rejected = False
            elif fleet is not None:
                self.outcomes.clear()
                if fleet.override is None and fleet.state is OPEN and fleet.open_until:
                    fleet.held = True
                else:
                    self.fleet = None
            self._token_base = 0
            self._update_reporting()
            changes = self._settle(ChangeOrigin.FLEET, TransitionCause.EXTERNAL, 0)
        if changes:
            self._publish(changes)

    def reject_reports(self) -> None:
        """The server refused this breaker's reports: stop sending them."""
        with self._lock:
            self.reports_rejected = True
            self._update_reporting()
            self.outcomes.clear()

    # -- internals (under the lock) -----------------------------------------------------

    def _admit(self, now: float) -> int | None:
        """The slow path of ``acquire``: a token, None (rejected) or ``_NEEDS_LEASE``."""
        fleet = self.fleet
        local = self.local
        if fleet is not None:
            override = fleet.override
            if override is not None:
                if override is BreakerOverride.FORCE_OPEN:
                    return None
                return self._token_base | _UNCOUNTED
            self._fleet_timers(now)
            fleet = self.fleet
        if fleet is None or fleet.state is CLOSED:
            generation = local.before_request(now)
            return None if generation is None else self._token_base | generation
        if fleet.state is OPEN:
            # Rejected, but the instance's own breaker still sees the attempt, as a
            # per-instance breaker would (gobreaker refreshes its state on every
            # request: a closed window rolls over, an open timeout ends).
            local.current_state(now)
            return None
        # Fleet half-open: ask for a lease only if this instance would admit the call.
        return _NEEDS_LEASE if local.admits(now) else None

    def _fleet_timers(self, now: float) -> None:
        """The fleet view's own clock: open -> half-open (or dropped, when held)."""
        fleet = self.fleet
        if fleet is None or fleet.state is not OPEN or fleet.open_until is None:
            return
        if not fleet.open_until < now:
            return
        if fleet.held:
            self.fleet = None
            return
        fleet.state = HALF_OPEN
        fleet.open_until = None
        fleet.unleased = 0

    def _lease_request(self) -> tuple[ClusterPort | None, BreakerKey | None, int]:
        with self._lock:
            fleet = self.fleet
            return self.cluster, self.key, 0 if fleet is None else fleet.generation

    def _admit_with(self, answer: LeaseAnswer | None) -> int:
        """Finish a fleet half-open admission with the server's lease answer."""
        if answer is not None and not answer.granted:
            if answer.state is not None:
                self.apply_fleet(answer.state, answer.generation, None, self.override)
            if answer.state is CLOSED:  # the fleet closed meanwhile: an ordinary call
                try:
                    return self.acquire()  # counts its own rejection
                except ProbeLeaseRequired:
                    pass
            with self._lock:
                if self.reporting:
                    self.outcomes.rejected += 1
            raise BreakerOpenError(self.name, (answer.state or HALF_OPEN).value)
        with self._lock:
            now = self._now()
            fleet = self.fleet
            token: int | None = None
            if answer is None and fleet is not None and fleet.state is HALF_OPEN:
                # No answer in time: at most maxRequests probes of this instance.
                if fleet.unleased < self.local.max_requests:
                    generation = self.local.before_request(now)
                    if generation is not None:
                        fleet.unleased += 1
                        token = self._token_base | generation
            elif answer is None:
                token = self._admit(now)  # the fleet moved on meanwhile: decide afresh
                if token == _NEEDS_LEASE:
                    token = None
            else:  # granted; a lease this instance cannot use expires on the server
                generation = self.local.before_request(now)
                if generation is not None:
                    token = -next(_probe_tokens)
                    self._leases[token] = (answer.lease_id, self._token_base >> _LOCAL_BITS,
                                           generation)
            if token is None and self.reporting:
                self.outcomes.rejected += 1
            state = self.state
            changes = self._settle()
        if changes:
            self._publish(changes)
        if token is None:
            raise BreakerOpenError(self.name, state.value if state is not CLOSED else "half-open")
        return token

    def _effective(self) -> BreakerState:
        fleet = self.fleet
        local = self.local.state
        if fleet is None:
            return local
        if fleet.override is not None:
            return OPEN if fleet.override is BreakerOverride.FORCE_OPEN else CLOSED
        return _BY_RANK[max(_RANK[local], _RANK[fleet.state])]

    def _settle(
        self,
        origin: ChangeOrigin | None = None,
        cause: TransitionCause | None = None,
        generation: int = 0,
    ) -> Changes:
        """Recompute the effective state; the event to publish if it changed.

        Without an explicit origin, the change is ``local``'s (its queued
        transitions say why); ``_clear`` is recomputed either way.
        """
        local = self.local
        if local.pending:
            last = local.take_transitions()[-1]
            if origin is None:
                origin, cause, generation = ChangeOrigin.LOCAL, last.cause, last.generation
        fleet = self.fleet
        self._clear = fleet is None or (fleet.override is None and fleet.state is CLOSED)
        before, after = self.state, self._effective()
        if after is before:
            return None
        self.state = after
        if origin is None:  # the fleet view's own timer
            origin, cause = ChangeOrigin.FLEET, TransitionCause.TIMEOUT
            generation = 0 if fleet is None else fleet.generation
        return [StateChangeEvent(self.name, before, after, generation,
                                 cause or TransitionCause.EXTERNAL, origin)]

    def take_outcomes(self) -> tuple[list[CodeRun], int]:
        """The outcomes to report now, oldest first, and the number of calls
        rejected since the last take (the link's flusher)."""
        with self._lock:
            outcomes = self.outcomes
            if not self.reporting:
                outcomes.clear()  # went local or refused meanwhile: dropped
                return [], 0
            return outcomes.drain(), outcomes.drain_rejected()

    def _report(self, code: int) -> None:
        with self._lock:
            if self.reporting:
                self.outcomes.add(code)

    def _update_reporting(self) -> None:
        fleet = self.fleet
        reporting = (
            self.cluster is not None and self.key is not None and not self.reports_rejected
            and (fleet is None or fleet.override is not BreakerOverride.DISABLED)
        )
        outcomes = self.outcomes
        if reporting:
            generation = self._token_base >> _LOCAL_BITS
            counting = outcomes.success
            if counting is None or counting[0] != generation:
                outcomes.count_successes(generation)
        elif outcomes.success is not None:
            outcomes.count_successes(None)
        self.reporting = reporting

    def _publish(self, changes: list[StateChangeEvent]) -> None:
        for event in changes:
            self._hooks.emit_state_change(event)
