"""Which breaker policy an agent holds for a breaker key (report/lease validation).

An agent may only report outcomes and take leases for breakers its resolved
policies define: the key's spec must be the spec that defined the target's
breaker, and the target must be an explicit entry or fall under a default
slot. Anything else is refused without creating state.
"""

from __future__ import annotations

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    Direction,
    ResolvedPolicies,
    TargetKind,
    TargetPolicy,
)


def _direction(key: BreakerKey) -> Direction | None:
    if key.kind is not TargetKind.COMPONENT:
        return None
    try:
        return Direction(key.method)
    except ValueError:
        return None


def breaker_policy_for(
    policies: ResolvedPolicies | None, key: BreakerKey
) -> CircuitBreakerPolicy | None:
    """The breaker policy ``policies`` give ``key``, or None when they give none."""
    if policies is None or not key.target:
        return None
    direction = _direction(key)
    if key.kind is TargetKind.COMPONENT and direction is None:
        return None
    explicit: TargetPolicy | None = None
    default: TargetPolicy | None = None
    for target in policies.targets:
        if target.kind is not key.kind or target.direction is not direction:
            continue
        if not target.is_default and target.name == key.target:
            explicit = target
            break
        if target.is_default and (default is None or not target.component_type):
            default = target
    chosen = explicit or default
    if chosen is None or chosen.circuit_breaker is None:
        return None
    if (chosen.spec_namespace, chosen.spec_name) != (key.namespace, key.spec):
        return None
    return chosen.circuit_breaker
