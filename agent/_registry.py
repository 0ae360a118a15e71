"""Live circuit breakers: thread-safe ``Breaker`` objects, grouped and LRU-bounded.

Breakers are grouped per target policy entry (a target, or a default slot) and
its breaker policy: when a new policy snapshot keeps the same breaker policy for
a target, its breakers (and their state) carry over. Inside a group, breakers
are keyed per app method or actor id and bounded by the target's
``circuitBreakerCacheSize``: the least recently used one is evicted.

A breaker runs in one of two modes (see ``docs/agent.md``, "Cluster mode"):

* **local** (no control plane, disconnected, or told so): the per-instance
  ``BreakerStateMachine`` decides, as in Dapr;
* **cluster** (``cluster`` set by the link): the state is what the control
  plane's updates say (``apply_cluster``); the local machine only counts as a
  shadow and never opens on its own; outcomes go to ``outcomes`` for the
  link's flusher; a half-open call needs a probe lease.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from agent._breaker import (
    BreakerState,
    BreakerStateMachine,
    Counts,
    Transition,
    TripFunction,
)
from agent._breaker_key import BreakerKey
from agent._clock import SYSTEM_CLOCK, Clock
from agent._cluster_port import ClusterOverride, ClusterPort, LeaseAnswer, ProbeLeaseRequired
from agent._errors import BreakerOpenError
from agent._events import EventHooks, StateChangeEvent
from agent._policy import CircuitBreakerPolicy, TargetPolicy
from agent._reporting import OutcomeAccumulator

# Recency of use for the LRU: next() on a shared counter is atomic under the GIL,
# so touching a breaker on the hot path takes no lock.
_use_ticks = itertools.count()
touch_tick = _use_ticks.__next__
# Probe calls hold a negative token instead of a generation: release() tells them apart.
_probe_tokens = itertools.count(1)
CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN


class Breaker(BreakerStateMachine):
    """One circuit breaker: the ``BreakerStateMachine`` behind a short lock.

    ``acquire()`` before the call (raises ``BreakerOpenError``) returns the
    generation to hand back to ``release(generation, success)`` afterwards.
    Use these (not the inherited unlocked methods) from calling code.
    """

    __slots__ = (
        "_floor", "_hooks", "_leases", "_lock", "_now", "_ok_code", "cluster",
        "cluster_generation", "evicted", "key", "last_used", "name", "outcomes", "override",
        "policy", "reports_rejected", "sink",
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
        super().__init__(
            max_requests=policy.max_requests,
            interval=policy.interval,
            timeout=policy.timeout,
            trip=trip,
            now=self._now(),
        )
        #: Set when the LRU dropped this breaker; holders must look it up again.
        self.evicted = False
        self.last_used = touch_tick()
        #: The identity shared with every agent of the cluster (None: local only).
        self.key = key
        #: Set while following the cluster; None in local mode.
        self.cluster: ClusterPort | None = None
        self.cluster_generation = 0
        self.override: ClusterOverride | None = None
        #: Outcomes not yet reported; ``sink`` is its append while reporting, else None.
        self.outcomes = OutcomeAccumulator()
        self.sink: Callable[[int], None] | None = None
        self.reports_rejected = False
        self._floor = 0  # local generation at the last adoption: older calls are not reported
        self._ok_code = 1  # outcome code of a success in the adopted cluster generation
        self._leases: dict[int, tuple[str, int]] = {}  # probe token -> (lease id, generation)

    # -- around a call ---------------------------------------------------------------

    def acquire(self) -> int:
        """Admit one request; its generation. Raises ``BreakerOpenError`` when rejected.

        In cluster half-open, raises ``ProbeLeaseRequired`` instead: the caller
        then asks for a lease with ``acquire_probe`` / ``acquire_probe_async``.
        """
        with self._lock:
            # Hot path: closed with no interval window needs no clock read. It is
            # exactly what before_request does in that state.
            if self.state is CLOSED and self._expiry is None:
                self._requests += 1
                return self.generation
            now = self._now()
            needs_lease = (
                self.cluster is not None and self.override is None
                and self.current_state(now) is HALF_OPEN
            )
            generation = None if needs_lease else self.before_request(now)
            state = self.state
            changed = self.take_transitions() if self.pending else None
        if changed:
            self._publish(changed)
        if needs_lease:
            raise ProbeLeaseRequired(self)
        if generation is None:
            raise BreakerOpenError(self.name, state.value)
        return generation

    def acquire_probe(self) -> int:
        """Admit a half-open probe in cluster mode: a lease, asked for from this thread.

        This is the only network wait on a call path; it lasts at most the
        lease deadline. Granted: the call runs as the lease's probe. Refused:
        ``BreakerOpenError``. No answer in time (or no server): the local
        half-open state machine decides.
        """
        cluster, key = self.cluster, self.key
        if cluster is None or key is None:
            return self._acquire_locally()
        return self._admit_with(cluster.lease_sync(key, self.cluster_generation))

    async def acquire_probe_async(self) -> int:
        """``acquire_probe`` for coroutines: the lease is awaited."""
        cluster, key = self.cluster, self.key
        if cluster is None or key is None:
            return self._acquire_locally()
        return self._admit_with(await cluster.lease_async(key, self.cluster_generation))

    def release(self, generation: int, success: bool) -> None:
        """Report the outcome of a request admitted in ``generation``."""
        with self._lock:
            if (success and self.state is CLOSED and self._expiry is None
                    and generation == self.generation):
                # Hot path, exactly after_request's closed-success branch.
                self._ts += 1
                self._cs += 1
                self._cf = 0
                sink = self.sink
                if sink is not None:
                    sink(self._ok_code)
                return
            probe = self._leases.pop(generation, None) if generation < 0 else None
            urgent = False
            if generation >= 0:
                now = self._now()
                if self.cluster is None:
                    self.after_request(generation, success, now)
                else:
                    urgent = self.count_shadow(generation, success, now)
                sink = self.sink
                if sink is not None and generation >= self._floor:
                    sink(self.cluster_generation << 1 | success)
            cluster = self.cluster
            changed = self.take_transitions() if self.pending else None
        if changed:
            self._publish(changed)
        if cluster is not None and self.key is not None:
            if probe is not None:
                cluster.report_probe(self.key, probe[0], probe[1], success)
            elif urgent or not success:
                # Failures are reported at once (wakes coalesce to one per flush):
                # the fleet's trip must not wait for a report tick.
                cluster.wake()

    # -- inspection ------------------------------------------------------------------

    def observe(self) -> BreakerState:
        """The current state (an open breaker past its timeout reads as half-open)."""
        with self._lock:
            state = self.current_state(self._now())
            changed = self.take_transitions() if self.pending else None
        if changed:
            self._publish(changed)
        return state

    def snapshot_counts(self) -> Counts:
        """The counters now, read under the lock."""
        with self._lock:
            return self.counts

    # -- the cluster seam -------------------------------------------------------------

    def adopt_external(self, state: BreakerState, generation: int, **kwargs: Any) -> bool:
        """Adopt a state decided by the control plane (the cluster-mode seam)."""
        with self._lock:
            adopted = self.adopt(state, generation, self._now(), **kwargs)
            changed = self.take_transitions()
        if changed:
            self._publish(changed)
        return adopted

    def apply_cluster(
        self,
        state: BreakerState,
        generation: int,
        open_remaining: float | None = None,
        override: ClusterOverride | None = None,
    ) -> bool:
        """Take the cluster's state from a ``BreakerUpdate``; False if stale or repeated.

        ``generation`` is the cluster's; an update older than the last one
        adopted is ignored. Overrides: FORCE_OPEN acts as open (no local
        timeout), FORCE_CLOSED and DISABLED as closed (DISABLED: nothing is
        reported). The local generation moves on, so calls admitted before
        are neither counted nor reported.
        """
        effective = state
        if override is ClusterOverride.FORCE_OPEN:
            effective = OPEN
        elif override is not None:
            effective = CLOSED
        with self._lock:
            if generation < self.cluster_generation or (
                generation == self.cluster_generation and generation > 0
                and effective is self.state and override is self.override
            ):
                return False
            now = self._now()
            expiry = None
            if effective is OPEN and override is None:
                expiry = now + (self.timeout if open_remaining is None else open_remaining)
            self.adopt(effective, self.generation + 1, now, expiry=expiry)
            if override is not None:
                self._expiry = None  # forced states do not time out or roll windows
            self.cluster_generation = generation
            self.override = override
            self._floor = self.generation
            self._ok_code = generation << 1 | 1
            self._update_sink()
            changed = self.take_transitions()
        if changed:
            self._publish(changed)
        return True

    def follow(self, cluster: ClusterPort | None) -> None:
        """Enter cluster mode (follow ``cluster``) or go back to local mode (None).

        Either way the current state is kept as the starting point. Going
        local drops unreported outcomes and outstanding leases, clears the
        override, and restarts timers a forced state had stopped.
        """
        with self._lock:
            self.cluster = cluster
            if cluster is None:
                self.outcomes.clear()
                self._leases.clear()
                self.override = None
                if self._expiry is None:
                    self._expiry = self._default_expiry(self._now())
            self._update_sink()

    def reject_reports(self) -> None:
        """The server refused this breaker's reports: stop sending them."""
        with self._lock:
            self.reports_rejected = True
            self._update_sink()
            self.outcomes.clear()

    # -- internals --------------------------------------------------------------------

    def _update_sink(self) -> None:
        reporting = (
            self.cluster is not None and self.key is not None and not self.reports_rejected
            and self.override is not ClusterOverride.DISABLED
        )
        self.sink = self.outcomes.append if reporting else None

    def _acquire_locally(self) -> int:
        with self._lock:
            generation = self.before_request(self._now())
            state = self.state
            changed = self.take_transitions() if self.pending else None
        if changed:
            self._publish(changed)
        if generation is None:
            raise BreakerOpenError(self.name, state.value)
        return generation

    def _admit_with(self, answer: LeaseAnswer | None) -> int:
        if answer is None:  # no answer within the deadline: the local half-open decides
            return self._acquire_locally()
        if answer.granted:
            with self._lock:
                token = -next(_probe_tokens)
                self._leases[token] = (answer.lease_id, self.cluster_generation)
            return token
        state = answer.state or HALF_OPEN
        if answer.state is not None:
            self.apply_cluster(answer.state, answer.generation, None, self.override)
        if state is CLOSED:  # the cluster closed meanwhile: an ordinary call
            try:
                return self.acquire()
            except ProbeLeaseRequired:
                pass
        raise BreakerOpenError(self.name, state.value)

    def _publish(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self._hooks.emit_state_change(
                StateChangeEvent(self.name, t.from_state, t.to_state, t.generation, t.cause)
            )


GroupKey = tuple[Any, ...]


def group_key(target: TargetPolicy) -> GroupKey:
    """The identity of a breaker group: which spec entry, and which breaker policy."""
    return (
        target.spec_namespace,
        target.spec_name,
        target.kind,
        target.name,
        target.direction,
        target.component_type,
        target.is_default,
        target.circuit_breaker,
        target.circuit_breaker_scope,
        target.circuit_breaker_cache_size,
    )


class _Group:
    __slots__ = ("breakers", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.breakers: dict[str, Breaker] = {}


class BreakerRegistry:
    """All breakers of one agent; ``get`` finds or creates, ``retain`` prunes.

    With ``cluster`` set (by the policy link), every breaker created or
    dropped is announced to it, so the link can tell the control plane which
    breakers this agent holds.
    """

    def __init__(
        self, clock: Clock, hooks: EventHooks, on_evict: Callable[[], object] | None = None
    ) -> None:
        self._clock = clock
        self._on_evict = on_evict
        self._hooks = hooks
        self._lock = threading.Lock()
        self._groups: dict[GroupKey, _Group] = {}
        self._by_key: dict[BreakerKey, Breaker] = {}
        self.cluster: ClusterPort | None = None

    def get(
        self,
        target: TargetPolicy,
        name: str,
        trip: TripFunction,
        *,
        bounded: bool,
        key: BreakerKey | None = None,
    ) -> Breaker:
        """The breaker called ``name`` under ``target``, created closed if new.

        ``bounded`` groups (app methods, actor ids) evict their least recently
        used breaker past ``circuitBreakerCacheSize``. ``key`` is the breaker's
        cluster-wide identity (``agent._breaker_key``).
        """
        policy = target.circuit_breaker
        assert policy is not None
        gkey = group_key(target)
        with self._lock:
            group = self._groups.get(gkey)
            if group is None:
                group = self._groups[gkey] = _Group(target.circuit_breaker_cache_size)
            breaker = group.breakers.get(name)
            if breaker is not None:
                breaker.last_used = touch_tick()
                return breaker
            breaker = Breaker(name, policy, trip, self._clock, self._hooks, key)
            group.breakers[name] = breaker
            if key is not None:
                self._by_key[key] = breaker
            cluster = self.cluster
            if cluster is not None:
                cluster.breaker_created(breaker)
            evicted = bounded and len(group.breakers) > group.capacity
            if evicted:
                oldest = min(group.breakers.values(), key=lambda b: b.last_used)
                del group.breakers[oldest.name]
                self._dropped(oldest)
        if evicted and self._on_evict is not None:
            self._on_evict()
        return breaker

    def retain(self, targets: Iterable[TargetPolicy]) -> None:
        """Drop the groups no longer used by ``targets`` (after a policy swap)."""
        keep = {group_key(t) for t in targets if t.circuit_breaker is not None}
        with self._lock:
            for gkey in [k for k in self._groups if k not in keep]:
                for breaker in self._groups.pop(gkey).breakers.values():
                    self._dropped(breaker)

    def _dropped(self, breaker: Breaker) -> None:
        breaker.evicted = True
        if breaker.key is not None and self._by_key.get(breaker.key) is breaker:
            del self._by_key[breaker.key]
            if self.cluster is not None:
                self.cluster.breaker_dropped(breaker)

    def breakers(self) -> list[Breaker]:
        """Every live breaker (for inspection and tests)."""
        with self._lock:
            return [b for g in self._groups.values() for b in g.breakers.values()]

    def find(self, name: str) -> Breaker | None:
        """A live breaker by display name, if any."""
        return next((b for b in self.breakers() if b.name == name), None)

    def by_key(self, key: BreakerKey) -> Breaker | None:
        """The live breaker with cluster identity ``key``, if any."""
        with self._lock:
            return self._by_key.get(key)
