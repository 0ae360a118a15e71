"""The live breakers of one agent, grouped and LRU-bounded.

Breakers (``fusebox.agent._live_breaker.Breaker``: this instance's own machine and the
fleet's view side by side) are grouped per target policy entry (a target, or
a default slot) and its breaker policy: when a new policy snapshot keeps the
same breaker policy for a target, its breakers (and their state) carry over.
Inside a group, breakers are keyed per app method or actor id and bounded by
the target's ``circuitBreakerCacheSize``: the least recently used one is
evicted.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from typing import Any

from fusebox.agent._cluster_port import ClusterPort
from fusebox.agent._live_breaker import Breaker
from fusebox.agent.breaker import TripFunction
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.clock import Clock
from fusebox.agent.events import EventHooks
from fusebox.agent.policy import TargetPolicy

# Recency of use for the LRU: next() on a shared counter is atomic under the GIL,
# so touching a breaker on the hot path takes no lock.
_use_ticks = itertools.count()
touch_tick = _use_ticks.__next__


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
        cluster-wide identity (``fusebox.agent.breaker_key``).
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
            breaker.last_used = touch_tick()
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
