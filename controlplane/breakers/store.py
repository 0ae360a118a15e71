"""The breaker store contract, and ``open_breaker_store`` to pick one from a URL.

Both stores run the same algorithm (gobreaker's, as ``fusebox.agent.breaker``) and
pass the same behavioural test suite; the semantics they share are in
``docs/breaker-state.md``. In short:

- ``generation`` counts a breaker's events: changes of effective state and of its override;
  a closed ``interval`` window that rolls over resets the counts but is not an
  event and does not bump it.
- While closed, each reported outcome is gobreaker's ``before_request`` then
  ``after_request`` at the time the batch is applied; the trip is evaluated on
  each failure. While open, outcomes are stale and dropped. While half-open,
  only the first outcome of a batch carrying a live lease counts (a lease
  admits one probe), and the lease is consumed.
- A lease is gobreaker's half-open ``before_request``: granted while fewer
  than ``max_requests`` requests were admitted in this half-open period; a
  lease that expires unreported gives its slot back.
- While an override is active the state machine is frozen: outcomes are
  dropped, no time-driven transition happens, no lease is granted. Clearing
  it resumes the machine where it was.
- A policy with a quorum (extension) attributes each outcome while closed to
  its instance (``OutcomeBatch.run_instances`` or ``instance_id``); a true
  trip opens only when enough distinct instances of the window failed.
- An override may be set ahead of use (``set_override`` with a policy creates
  a breaker that has no state) and on every breaker of a target, existing and
  future (``set_target_override``): a breaker created while a target override
  is in force starts with it.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Protocol

from fusebox.agent.breaker import BreakerOverride, BreakerState
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy
from fusebox.controlplane.breakers.model import (
    BreakerEvent,
    BreakerSnapshot,
    BreakerTarget,
    LeaseGrant,
    OutcomeBatch,
    TargetOverride,
)

__all__ = ["BreakerStore", "open_breaker_store"]


class BreakerStore(Protocol):
    """Where cluster-wide breaker state lives (embedded in memory, or Redis)."""

    async def apply(self, batches: Sequence[OutcomeBatch]) -> list[BreakerEvent]:
        """Apply each batch atomically, in order; the transitions produced (already
        appended to the stream). Creates a breaker's state on first sight. A
        changed policy replaces the stored one; counts reset when its trip,
        interval or quorum changed while closed. ``ValueError`` (nothing
        applied) when a batch's ``run_instances`` does not name every run."""
        ...

    async def acquire_lease(
        self, key: BreakerKey, policy: CircuitBreakerPolicy, instance_id: str, ttl: float
    ) -> LeaseGrant:
        """A half-open probe lease; never granted while closed (none needed) or open."""
        ...

    async def advance(self) -> list[BreakerEvent]:
        """Time-driven changes that are due: open -> half-open, expired overrides
        cleared, expired leases dropped. Cheap when nothing is due."""
        ...

    async def get(self, key: BreakerKey) -> BreakerSnapshot | None:
        """One breaker, or ``None`` when no state exists for it."""
        ...

    async def list(
        self, *, namespace: str = "", target: str = "", state: BreakerState | None = None
    ) -> builtins.list[BreakerSnapshot]:
        """Every breaker matching the filters ("" / ``None``: any), by encoded key."""
        ...

    async def set_override(
        self,
        key: BreakerKey,
        override: BreakerOverride | None,
        *,
        reason: str,
        ttl: float | None,
        set_by: str,
        policy: CircuitBreakerPolicy | None = None,
    ) -> BreakerSnapshot:
        """Set (or, with ``None``, clear) an override; an OVERRIDE event whenever
        the override changes (agents must hear of it even when the effective
        state stays the same). A breaker without state is created first (closed,
        zero counts, ``policy``) when an override is set with a ``policy`` (ahead
        of use; its target's override, if any, does not apply: this one does);
        otherwise ``BreakerNotFound``."""
        ...

    async def set_target_override(
        self,
        target: BreakerTarget,
        override: BreakerOverride | None,
        *,
        reason: str,
        ttl: float | None,
        set_by: str,
    ) -> builtins.list[BreakerSnapshot]:
        """Set (or, with ``None``, clear) the override of every breaker of
        ``target``: each existing one as ``set_override`` would (the same events,
        every expiry at ``now + ttl``), and, until cleared or expired, each one
        created later (by ``apply`` or ``adopt_target_override``), which starts
        with it (an OVERRIDE event). Clearing also clears the override of every
        existing breaker of the target. The target's breakers after the change,
        by encoded key."""
        ...

    async def target_overrides(
        self, *, namespace: str = "", target: str = ""
    ) -> builtins.list[TargetOverride]:
        """The target overrides in force matching the filters ("": any), by encoded target."""
        ...

    async def adopt_target_override(
        self, key: BreakerKey, policy: CircuitBreakerPolicy
    ) -> BreakerSnapshot | None:
        """The breaker's state, created now (with ``policy``, under its target's
        override: an OVERRIDE event) when it has none and a target override is
        in force for it; ``None`` when it has no state and none is (nothing is
        created). The server calls it when an agent declares interest in a
        breaker without state, so that the agent learns the override at once."""
        ...

    async def reset(self, key: BreakerKey, *, reason: str, set_by: str) -> BreakerSnapshot:
        """Closed, zero counts, new generation, override cleared, a RESET event."""
        ...

    async def recent_events(self, key: BreakerKey, count: int = 20) -> builtins.list[BreakerEvent]:
        """The breaker's last ``count`` events, oldest first."""
        ...

    async def read_events(
        self, after: str, *, block: float = 0.0, count: int = 1000
    ) -> tuple[str, builtins.list[BreakerEvent]]:
        """Events after position ``after`` ("" = from now, "0" = from the start) and
        the position to resume from. Waits up to ``block`` seconds for one. Each
        event's ``position`` is where to resume to get the events after it."""
        ...

    async def resumable(self, position: str) -> bool:
        """Whether ``read_events(position)`` would return every event after ``position``.

        False for a position this store never gave (another store, one that
        restarted, a malformed one, one beyond its newest event) and for one
        whose following events were trimmed from the stream: a reader that
        cannot resume must start again from a snapshot.
        """
        ...

    async def ping(self) -> None:
        """``StoreUnavailable`` when the store cannot serve."""
        ...

    async def close(self) -> None: ...


_ACCEPTED = (
    "memory:// (or no URL, or a sqlite URL: in memory), redis://HOST:PORT/DB, rediss://, "
    "redis+cluster://HOST:PORT,HOST:PORT, redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME"
)


def open_breaker_store(url: str | None) -> BreakerStore:
    """The breaker store for the server's store URL; no I/O (await ``ping()``).

    Breaker state is ephemeral in the embedded default, so the embedded spec
    store's URLs (none, ``memory://``, ``sqlite:///...``) all mean in memory.
    Every Redis topology of ``fusebox.controlplane.redis_client`` is accepted.
    """
    scheme = (url or "memory://").partition("://")[0].lower()
    if scheme in ("memory", "sqlite"):
        from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore

        return EmbeddedBreakerStore()
    from fusebox.controlplane.redis_client import REDIS_SCHEMES

    if scheme in REDIS_SCHEMES:
        from fusebox.controlplane.breakers.redis import RedisBreakerStore

        return RedisBreakerStore(url or "")
    raise ValueError(f"breaker store URL: unknown scheme {scheme!r}; accepted: {_ACCEPTED}")
