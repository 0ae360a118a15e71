"""A fleet budget's identity and an instance's share of it (docs/budgets.md).

The one vocabulary of fleet budgets for the agent and the control plane:

* ``BudgetKind``: a rate limit or a retry budget;
* ``BudgetKey``: which fleet budget (= ``fusebox.v1.BudgetKey``), derived
  from a target entry by ``budget_key`` and nowhere else;
* ``BudgetShare``: the fraction of it one instance may use, pushed by the
  control plane with a lease (= ``fusebox.v1.BudgetShare``);
* ``fallback_share``: what an instance enforces without a pushed share.
"""

from __future__ import annotations

from dataclasses import dataclass

from fusebox.agent._policy_enums import BudgetKind as BudgetKind
from fusebox.agent.policy import (
    Direction,
    RateLimitPolicy,
    RateLimitScope,
    TargetKind,
    TargetPolicy,
)
from fusebox.agent.wire_enums import (
    BUDGET_KIND_FROM_PB,
    BUDGET_KIND_TO_PB,
    DIRECTION_FROM_PB,
    DIRECTION_TO_PB,
    TARGET_KIND_FROM_PB,
    TARGET_KIND_TO_PB,
)
from fusebox.v1 import agent_pb2, policy_pb2

__all__ = [
    "BudgetKey",
    "BudgetKind",
    "BudgetShare",
    "budget_key",
    "fallback_share",
]


@dataclass(frozen=True, slots=True)
class BudgetKey:
    """Identity of one fleet budget, shared by every agent enforcing a share of it.

    ``namespace``/``spec`` name the spec holding the target entry (as for a
    breaker); ``app_id`` is the calling app, ``""`` for a fleet-scoped rate
    limit (every caller shares it). Apps are limited as a whole, every method
    together.

    >>> str(BudgetKey("default", "resiliency", BudgetKind.RATE_LIMIT, TargetKind.APP,
    ...               "order-processor", app_id="checkout"))
    'default/resiliency/rate-limit/app/order-processor@checkout'
    """

    namespace: str
    spec: str
    kind: BudgetKind
    target_kind: TargetKind
    target: str
    direction: Direction | None = None  # components only
    app_id: str = ""

    def __str__(self) -> str:
        direction = f"/{self.direction.value}" if self.direction is not None else ""
        caller = f"@{self.app_id}" if self.app_id else ""
        return (f"{self.namespace}/{self.spec}/{self.kind.value}/{self.target_kind.value}/"
                f"{self.target}{direction}{caller}")

    def to_proto(self) -> policy_pb2.BudgetKey:
        return policy_pb2.BudgetKey(
            namespace=self.namespace, spec=self.spec, kind=BUDGET_KIND_TO_PB[self.kind],
            target_kind=TARGET_KIND_TO_PB[self.target_kind], target=self.target,
            direction=DIRECTION_TO_PB[self.direction], app_id=self.app_id,
        )

    @classmethod
    def from_proto(cls, m: policy_pb2.BudgetKey) -> BudgetKey:
        """Raises ValueError for a kind this agent does not know (a newer peer)."""
        kind = BUDGET_KIND_FROM_PB.get(m.kind)
        target_kind = TARGET_KIND_FROM_PB.get(m.target_kind)
        if kind is None or target_kind is None:
            raise ValueError(f"unknown budget kind {m.kind} or target kind {m.target_kind}")
        return cls(m.namespace, m.spec, kind, target_kind, m.target,
                   DIRECTION_FROM_PB.get(m.direction), m.app_id)


def budget_key(target: TargetPolicy, kind: BudgetKind, app_id: str) -> BudgetKey:
    """The budget of ``kind`` that ``target`` binds for calls made by ``app_id``.

    A fleet-scoped rate limit drops the caller: every app holding the entry shares it.
    """
    fleet = kind is BudgetKind.RATE_LIMIT and isinstance(target.rate_limit, RateLimitPolicy) and (
        target.rate_limit.scope is RateLimitScope.FLEET
    )
    return BudgetKey(target.spec_namespace, target.spec_name, kind, target.kind, target.name,
                     target.direction, "" if fleet else app_id)


def fallback_share(fleet_size: int) -> float:
    """The share enforced without a pushed one: ``1 / fleet_size`` (never unlimited).

    ``fleet_size`` is the last size the control plane told for the key; 1
    (alone) when never told.
    """
    return 1.0 / max(1, fleet_size)


@dataclass(frozen=True, slots=True)
class BudgetShare:
    """The fraction of a fleet budget one instance may use, until its lease ends.

    ``lease`` is in seconds from receipt; ``generation`` increases per key
    and is acked back (docs/budgets.md, "Never over-commit while changing").
    """

    key: BudgetKey
    share: float
    fleet_size: int = 1
    lease: float = 0.0
    generation: int = 0

    def to_proto(self) -> agent_pb2.BudgetShare:
        m = agent_pb2.BudgetShare(key=self.key.to_proto(), share=self.share,
                                  fleet_size=self.fleet_size, generation=self.generation)
        m.lease.FromNanoseconds(round(self.lease * 1e9))
        return m

    @classmethod
    def from_proto(cls, m: agent_pb2.BudgetShare) -> BudgetShare:
        """Raises ValueError for a share outside [0, 1] or an unknown key kind."""
        if not 0.0 <= m.share <= 1.0:
            raise ValueError(f"budget share {m.share} is outside [0, 1]")
        return cls(BudgetKey.from_proto(m.key), m.share, m.fleet_size or 1,
                   m.lease.ToNanoseconds() / 1e9, m.generation)
