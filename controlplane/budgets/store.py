"""The budget store contract, its values, and ``open_budget_store`` to pick one.

A store keeps, per ``BudgetKey``, the instance table of docs/budgets.md
section 4 (demand, grants, what each instance may still enforce, acks,
departures) and the fleet's counters. One call per key per refresh does a
replica's whole exchange with it, atomically (``allocate``): the usage, acks
and departures its sessions reported since the last refresh go in, the
allocation comes out. Replicas sharing a store (Redis) are serialised by it
and see each other's instances in the table, so they act as one.

Times are the store's: the embedded store's clock, Redis ``TIME`` inside the
script (a test clock may replace both), so replicas with drifting clocks
agree on leases.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, unquote

from fusebox.agent.budget import BudgetKey, BudgetKind
from fusebox.agent.policy import (
    Direction,
    RateLimitPolicy,
    RateLimitScope,
    RetryBudgetPolicy,
    TargetKind,
    WhenExceeded,
)

__all__ = [
    "Allocation",
    "BudgetPolicy",
    "BudgetRequest",
    "BudgetStore",
    "BudgetView",
    "Grant",
    "InstanceView",
    "Usage",
    "decode_key",
    "encode_key",
    "fleet_rate",
    "open_budget_store",
    "policy_from_json",
    "policy_to_json",
]

BudgetPolicy = RateLimitPolicy | RetryBudgetPolicy


@dataclass(frozen=True, slots=True)
class Usage:
    """One instance's use of a budget since the replica's last refresh (summed reports).

    ``demand`` is in the budget's units (docs/budgets.md section 4): calls
    wanted for a rate limit, retries the ratio did not cover for a retry budget.
    """

    admitted: int = 0
    refused: int = 0
    first_attempts: int = 0
    demand: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.admitted + other.admitted, self.refused + other.refused,
                     self.first_attempts + other.first_attempts, self.demand + other.demand)


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    """What one replica brings to one refresh of ``key``.

    ``holders``: its live sessions holding the key; ``usage`` and ``acks``
    (instance -> generation) since its last refresh; ``departed``: instances
    whose session here ended (their share is freed a lease later).
    """

    key: BudgetKey
    policy: BudgetPolicy
    holders: Collection[str] = ()
    usage: Mapping[str, Usage] = field(default_factory=dict)
    acks: Mapping[str, int] = field(default_factory=dict)
    departed: Collection[str] = ()


@dataclass(frozen=True, slots=True)
class Grant:
    share: float
    generation: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """A key's grants after a refresh: ``shares`` of every live instance (any replica)."""

    key: BudgetKey
    generation: int
    shares: Mapping[str, Grant]
    fleet_size: int
    free: float
    lease: float
    at: float  # the store's time of the refresh


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance_id: str
    share: float  # the latest grant
    held: float  # the largest grant it may still enforce
    generation: int
    acked_generation: int
    demand: float  # per second, now
    seen_at: float
    left_at: float | None  # None: live
    reports_usage: bool  # False: no demand ever reported (an agent predating budgets?)

    def held_until(self, lease: float) -> float | None:
        """When a departed instance's share is freed."""
        return None if self.left_at is None else self.left_at + lease


@dataclass(frozen=True, slots=True)
class BudgetView:
    """One budget as ``fusebox budgets get`` shows it."""

    key: BudgetKey
    policy: BudgetPolicy | None
    generation: int
    fleet_size: int
    free: float
    lease: float
    admitted_per_second: float  # over the last complete seconds (``totals.WINDOW``)
    refused_per_second: float
    first_attempts_per_second: float
    instances: tuple[InstanceView, ...]
    at: float

    @property
    def use(self) -> float:
        """Admitted per second over the fleet's rate (0 without a policy or rate)."""
        rate = fleet_rate(self.policy) if self.policy is not None else 0.0
        return self.admitted_per_second / rate if rate > 0 else 0.0


class BudgetStore(Protocol):
    """Where fleet budget tables live (embedded in memory, or Redis)."""

    async def allocate(self, requests: Sequence[BudgetRequest]) -> builtins.list[Allocation]:
        """One refresh per request, each atomic for its key (usage, acks and
        departures applied, then allocated); the allocations in request order."""
        ...

    async def describe(self, key: BudgetKey) -> BudgetView | None:
        """One budget, or ``None`` when no instance holds it (any more)."""
        ...

    async def list(self, namespace: str = "") -> builtins.list[BudgetView]:
        """Every budget ("": of every namespace), by ``str(key)``."""
        ...

    async def ping(self) -> None:
        """``StoreUnavailable`` when the store cannot serve."""
        ...

    async def close(self) -> None: ...


def fleet_rate(policy: BudgetPolicy) -> float:
    """R: the fleet's calls per second (rate limit) or retry floor per second."""
    if isinstance(policy, RateLimitPolicy):
        return policy.limit / policy.period if policy.period > 0 else 0.0
    return policy.min_retries_per_second


# ---- encodings shared by the stores --------------------------------------------

_KEY_FIELDS = 7


def encode_key(key: BudgetKey) -> str:
    """A key as one string, safe inside a Redis hash tag (no braces) and reversible."""
    parts = (key.namespace, key.spec, key.kind.value, key.target_kind.value, key.target,
             key.direction.value if key.direction is not None else "", key.app_id)
    return "|".join(quote(part, safe="") for part in parts)


def decode_key(encoded: str) -> BudgetKey | None:
    """``encode_key``'s inverse; None for a string it did not make."""
    parts = [unquote(part) for part in encoded.split("|")]
    if len(parts) != _KEY_FIELDS:
        return None
    namespace, spec, kind, target_kind, target, direction, app_id = parts
    try:
        return BudgetKey(namespace, spec, BudgetKind(kind), TargetKind(target_kind), target,
                         Direction(direction) if direction else None, app_id)
    except ValueError:
        return None


def policy_to_json(policy: BudgetPolicy) -> str:
    if isinstance(policy, RateLimitPolicy):
        fields: dict[str, Any] = {
            "kind": BudgetKind.RATE_LIMIT.value, "name": policy.name, "limit": policy.limit,
            "period": policy.period, "burst": policy.burst, "scope": policy.scope.value,
            "when_exceeded": policy.when_exceeded.value, "max_wait": policy.max_wait,
            "count_retries": policy.count_retries,
        }
    else:
        fields = {
            "kind": BudgetKind.RETRY_BUDGET.value, "name": policy.name, "ratio": policy.ratio,
            "window": policy.window, "min_retries_per_second": policy.min_retries_per_second,
        }
    return json.dumps(fields, sort_keys=True)


def policy_from_json(text: str) -> BudgetPolicy | None:
    """The policy a store recorded; None when missing or unreadable."""
    try:
        f = json.loads(text)
        if f["kind"] == BudgetKind.RATE_LIMIT.value:
            return RateLimitPolicy(f["name"], int(f["limit"]), float(f["period"]),
                                   int(f["burst"]), RateLimitScope(f["scope"]),
                                   WhenExceeded(f["when_exceeded"]), float(f["max_wait"]),
                                   bool(f["count_retries"]))
        return RetryBudgetPolicy(f["name"], float(f["ratio"]), float(f["window"]),
                                 float(f["min_retries_per_second"]))
    except (ValueError, KeyError, TypeError):
        return None


_ACCEPTED = (
    "memory:// (or no URL, or a sqlite URL: in memory), redis://HOST:PORT/DB, rediss://, "
    "redis+cluster://HOST:PORT,HOST:PORT, redis+sentinel://HOST:PORT,HOST:PORT/MASTER_NAME"
)


def open_budget_store(url: str | None, **options: Any) -> BudgetStore:
    """The budget store for the breaker store's URL (budgets live where breakers do);
    no I/O. ``options`` go to the store (``params``, tests' ``clock``)."""
    scheme = (url or "memory://").partition("://")[0].lower()
    if scheme in ("memory", "sqlite"):
        from fusebox.controlplane.budgets.embedded import EmbeddedBudgetStore

        return EmbeddedBudgetStore(**options)
    from fusebox.controlplane.redis_client import REDIS_SCHEMES

    if scheme in REDIS_SCHEMES:
        from fusebox.controlplane.budgets.redis import RedisBudgetStore

        return RedisBudgetStore(url or "", **options)
    raise ValueError(f"budget store URL: unknown scheme {scheme!r}; accepted: {_ACCEPTED}")
