"""Cluster-wide circuit breaker state: one algorithm, three homes.

The agent's local mode (``fusebox.agent.breaker.BreakerStateMachine``), the embedded
store (that same class, in this process's memory) and the Redis store (the
same rules in Lua scripts, atomically in Redis) keep breakers for the whole
cluster. ``open_breaker_store(url)`` picks a store; both follow the
``BreakerStore`` contract. See ``docs/breaker-state.md``. A breaker's identity
is ``fusebox.agent.breaker_key.BreakerKey``, shared with the agents.
"""

from __future__ import annotations

from fusebox.controlplane.breakers.model import (
    BreakerEvent,
    BreakerNotFound,
    BreakerSnapshot,
    BreakerTarget,
    LeaseGrant,
    OutcomeBatch,
    OverrideInfo,
    TargetOverride,
)
from fusebox.controlplane.breakers.store import BreakerStore, open_breaker_store

__all__ = [
    "BreakerEvent",
    "BreakerNotFound",
    "BreakerSnapshot",
    "BreakerStore",
    "BreakerTarget",
    "LeaseGrant",
    "OutcomeBatch",
    "OverrideInfo",
    "TargetOverride",
    "open_breaker_store",
]
