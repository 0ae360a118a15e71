"""Live circuit breakers: thread-safe ``Breaker`` objects, grouped and LRU-bounded.

Breakers are grouped per target policy entry (a target, or a default slot) and
its breaker policy: when a new policy snapshot keeps the same breaker policy for
a target, its breakers (and their state) carry over. Inside a group, breakers
are keyed per app method or actor id and bounded by the target's
``circuitBreakerCacheSize``: the least recently used one is evicted.
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
from agent._clock import SYSTEM_CLOCK, Clock
from agent._errors import BreakerOpenError
from agent._events import EventHooks, StateChangeEvent
from agent._policy import CircuitBreakerPolicy, TargetPolicy

# Recency of use for the LRU: next() on a shared counter is atomic under the GIL,
# so touching a breaker on the hot path takes no lock.
_use_ticks = itertools.count()
touch_tick = _use_ticks.__next__
CLOSED = BreakerState.CLOSED


class Breaker(BreakerStateMachine):
    """One circuit breaker: the ``BreakerStateMachine`` behind a short lock.

    ``acquire()`` before the call (raises ``BreakerOpenError``) returns the
    generation to hand back to ``release(generation, success)`` afterwards.
    Use these (not the inherited unlocked methods) from calling code.
    """

    __slots__ = ("_hooks", "_lock", "_now", "evicted", "last_used", "name", "policy")

    def __init__(
        self,
        name: str,
        policy: CircuitBreakerPolicy,
        trip: TripFunction,
        clock: Clock,
        hooks: EventHooks,
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

    def acquire(self) -> int:
        """Admit one request; its generation. Raises ``BreakerOpenError`` when rejected."""
        with self._lock:
            # Hot path: closed with no interval window needs no clock read. It is
            # exactly what before_request does in that state.
            if self.state is CLOSED and self._expiry is None:
                self._requests += 1
                return self.generation
            generation = self.before_request(self._now())
            state = self.state
            changed = self.take_transitions() if self.pending else None
        if changed:
            self._publish(changed)
        if generation is None:
            raise BreakerOpenError(self.name, state.value)
        return generation

    def release(self, generation: int, success: bool) -> None:
        """Report the outcome of a request admitted in ``generation``."""
        with self._lock:
            if success and self.state is CLOSED and self._expiry is None:
                # Hot path, exactly after_request's closed-success branch.
                if generation == self.generation:
                    self._ts += 1
                    self._cs += 1
                    self._cf = 0
                return
            self.after_request(generation, success, self._now())
            changed = self.take_transitions() if self.pending else None
        if changed:
            self._publish(changed)

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

    def adopt_external(self, state: BreakerState, generation: int, **kwargs: Any) -> bool:
        """Adopt a state decided by the control plane (the cluster-mode seam)."""
        with self._lock:
            adopted = self.adopt(state, generation, self._now(), **kwargs)
            changed = self.take_transitions()
        if changed:
            self._publish(changed)
        return adopted

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
    """All breakers of one agent; ``get`` finds or creates, ``retain`` prunes."""

    def __init__(
        self, clock: Clock, hooks: EventHooks, on_evict: Callable[[], object] | None = None
    ) -> None:
        self._clock = clock
        self._on_evict = on_evict
        self._hooks = hooks
        self._lock = threading.Lock()
        self._groups: dict[GroupKey, _Group] = {}

    def get(
        self,
        target: TargetPolicy,
        name: str,
        trip: TripFunction,
        *,
        bounded: bool,
    ) -> Breaker:
        """The breaker called ``name`` under ``target``, created closed if new.

        ``bounded`` groups (app methods, actor ids) evict their least recently
        used breaker past ``circuitBreakerCacheSize``.
        """
        policy = target.circuit_breaker
        assert policy is not None
        key = group_key(target)
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(target.circuit_breaker_cache_size)
            breaker = group.breakers.get(name)
            if breaker is not None:
                breaker.last_used = touch_tick()
                return breaker
            breaker = Breaker(name, policy, trip, self._clock, self._hooks)
            group.breakers[name] = breaker
            evicted = bounded and len(group.breakers) > group.capacity
            if evicted:
                oldest = min(group.breakers.values(), key=lambda b: b.last_used)
                oldest.evicted = True
                del group.breakers[oldest.name]
        if evicted and self._on_evict is not None:
            self._on_evict()
        return breaker

    def retain(self, targets: Iterable[TargetPolicy]) -> None:
        """Drop the groups no longer used by ``targets`` (after a policy swap)."""
        keep = {group_key(t) for t in targets if t.circuit_breaker is not None}
        with self._lock:
            for key in [k for k in self._groups if k not in keep]:
                for breaker in self._groups.pop(key).breakers.values():
                    breaker.evicted = True

    def breakers(self) -> list[Breaker]:
        """Every live breaker (for inspection and tests)."""
        with self._lock:
            return [b for g in self._groups.values() for b in g.breakers.values()]

    def find(self, name: str) -> Breaker | None:
        """A live breaker by display name, if any."""
        return next((b for b in self.breakers() if b.name == name), None)


TripCompiler = Callable[[str], TripFunction]
