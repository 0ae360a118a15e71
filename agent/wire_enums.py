"""Every enum and its ``fusebox.v1`` wire value, in one place.

The agent, the control plane's server and stores, and the CLI convert with
these tables and no others. ``X_TO_PB`` maps each member onto its proto
value; ``X_FROM_PB`` is its inverse. Read a ``FROM`` table with ``.get``: a
peer of a newer version may send a value this one does not know, and the
``..._UNSPECIFIED`` (0) values are absent, except where they mean "none"
(``None``): no override, a target's direction or breaker scope not given.

==========================  ====================================  ==========================
table                       enum                                  proto enum
==========================  ====================================  ==========================
``STATE``                   ``fusebox.agent.breaker.BreakerState``       ``BreakerState``
``OVERRIDE``                ``fusebox.agent.breaker.BreakerOverride``    ``BreakerOverride``
``CAUSE``                   ``fusebox.agent.breaker.TransitionCause``    ``TransitionCause``
``TARGET_KIND``             ``fusebox.agent.policy.TargetKind``          ``TargetKind``
``DIRECTION``               ``fusebox.agent.policy.Direction``           ``ComponentDirection``
``BACKOFF``                 ``fusebox.agent.policy.BackoffKind``         ``BackoffKind``
``BREAKER_SCOPE``           ``fusebox.agent.policy.BreakerScope``        ``CircuitBreakerScope``
``RATE_LIMIT_SCOPE``        ``fusebox.agent.policy.RateLimitScope``      ``RateLimitScope``
``WHEN_EXCEEDED``           ``fusebox.agent.policy.WhenExceeded``        ``WhenExceeded``
``BUDGET_KIND``             ``fusebox.agent.budget.BudgetKind``          ``BudgetKind``
==========================  ====================================  ==========================

``TransitionCause.EXTERNAL`` has no wire value: it is the agent's own word for
an adopted state that came without a cause. The control plane's own enums
(audit actions and target kinds, spec revision actions) are mapped in
``fusebox.controlplane.wire_enums``: the agent never sees them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from fusebox.agent._policy_enums import (
    BackoffKind,
    BreakerScope,
    BudgetKind,
    Direction,
    RateLimitScope,
    TargetKind,
    WhenExceeded,
)
from fusebox.agent.breaker import BreakerOverride, BreakerState, TransitionCause
from fusebox.v1 import breaker_pb2, policy_pb2

__all__ = [
    "BACKOFF_FROM_PB",
    "BACKOFF_TO_PB",
    "BREAKER_SCOPE_FROM_PB",
    "BREAKER_SCOPE_TO_PB",
    "BUDGET_KIND_FROM_PB",
    "BUDGET_KIND_TO_PB",
    "CAUSE_FROM_PB",
    "CAUSE_TO_PB",
    "DIRECTION_FROM_PB",
    "DIRECTION_TO_PB",
    "OVERRIDE_FROM_PB",
    "OVERRIDE_TO_PB",
    "RATE_LIMIT_SCOPE_FROM_PB",
    "RATE_LIMIT_SCOPE_TO_PB",
    "STATE_FROM_PB",
    "STATE_TO_PB",
    "TARGET_KIND_FROM_PB",
    "TARGET_KIND_TO_PB",
    "WHEN_EXCEEDED_FROM_PB",
    "WHEN_EXCEEDED_TO_PB",
]

_Member = TypeVar("_Member")
_Wire = TypeVar("_Wire", bound=int)


def _inverse(table: Mapping[_Member, _Wire]) -> Mapping[_Wire, _Member]:
    return {wire: member for member, wire in table.items()}


STATE_TO_PB: Mapping[BreakerState, breaker_pb2.BreakerState] = {
    BreakerState.CLOSED: breaker_pb2.BREAKER_STATE_CLOSED,
    BreakerState.OPEN: breaker_pb2.BREAKER_STATE_OPEN,
    BreakerState.HALF_OPEN: breaker_pb2.BREAKER_STATE_HALF_OPEN,
}
STATE_FROM_PB = _inverse(STATE_TO_PB)

OVERRIDE_TO_PB: Mapping[BreakerOverride | None, breaker_pb2.BreakerOverride] = {
    None: breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED,
    BreakerOverride.FORCE_OPEN: breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN,
    BreakerOverride.FORCE_CLOSED: breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED,
    BreakerOverride.DISABLED: breaker_pb2.BREAKER_OVERRIDE_DISABLED,
}
OVERRIDE_FROM_PB = _inverse(OVERRIDE_TO_PB)

CAUSE_TO_PB: Mapping[TransitionCause, breaker_pb2.TransitionCause] = {
    TransitionCause.TRIP: breaker_pb2.TRANSITION_CAUSE_TRIP,
    TransitionCause.TIMEOUT: breaker_pb2.TRANSITION_CAUSE_TIMEOUT,
    TransitionCause.PROBE_SUCCESS: breaker_pb2.TRANSITION_CAUSE_PROBE_SUCCESS,
    TransitionCause.PROBE_FAILURE: breaker_pb2.TRANSITION_CAUSE_PROBE_FAILURE,
    TransitionCause.OVERRIDE: breaker_pb2.TRANSITION_CAUSE_OVERRIDE,
    TransitionCause.RESET: breaker_pb2.TRANSITION_CAUSE_RESET,
    TransitionCause.POLICY_CHANGE: breaker_pb2.TRANSITION_CAUSE_POLICY_CHANGE,
}
CAUSE_FROM_PB = _inverse(CAUSE_TO_PB)

TARGET_KIND_TO_PB: Mapping[TargetKind, policy_pb2.TargetKind] = {
    TargetKind.APP: policy_pb2.TARGET_KIND_APP,
    TargetKind.ACTOR: policy_pb2.TARGET_KIND_ACTOR,
    TargetKind.COMPONENT: policy_pb2.TARGET_KIND_COMPONENT,
}
TARGET_KIND_FROM_PB = _inverse(TARGET_KIND_TO_PB)

DIRECTION_TO_PB: Mapping[Direction | None, policy_pb2.ComponentDirection] = {
    None: policy_pb2.COMPONENT_DIRECTION_UNSPECIFIED,
    Direction.OUTBOUND: policy_pb2.COMPONENT_DIRECTION_OUTBOUND,
    Direction.INBOUND: policy_pb2.COMPONENT_DIRECTION_INBOUND,
}
DIRECTION_FROM_PB = _inverse(DIRECTION_TO_PB)

BACKOFF_TO_PB: Mapping[BackoffKind, policy_pb2.BackoffKind] = {
    BackoffKind.CONSTANT: policy_pb2.BACKOFF_KIND_CONSTANT,
    BackoffKind.EXPONENTIAL: policy_pb2.BACKOFF_KIND_EXPONENTIAL,
}
BACKOFF_FROM_PB = _inverse(BACKOFF_TO_PB)

BREAKER_SCOPE_TO_PB: Mapping[BreakerScope | None, policy_pb2.CircuitBreakerScope] = {
    None: policy_pb2.CIRCUIT_BREAKER_SCOPE_UNSPECIFIED,
    BreakerScope.ID: policy_pb2.CIRCUIT_BREAKER_SCOPE_ID,
    BreakerScope.TYPE: policy_pb2.CIRCUIT_BREAKER_SCOPE_TYPE,
    BreakerScope.BOTH: policy_pb2.CIRCUIT_BREAKER_SCOPE_BOTH,
}
BREAKER_SCOPE_FROM_PB = _inverse(BREAKER_SCOPE_TO_PB)

RATE_LIMIT_SCOPE_TO_PB: Mapping[RateLimitScope, policy_pb2.RateLimitScope] = {
    RateLimitScope.APP: policy_pb2.RATE_LIMIT_SCOPE_APP,
    RateLimitScope.FLEET: policy_pb2.RATE_LIMIT_SCOPE_FLEET,
}
RATE_LIMIT_SCOPE_FROM_PB = _inverse(RATE_LIMIT_SCOPE_TO_PB)

WHEN_EXCEEDED_TO_PB: Mapping[WhenExceeded, policy_pb2.WhenExceeded] = {
    WhenExceeded.REJECT: policy_pb2.WHEN_EXCEEDED_REJECT,
    WhenExceeded.WAIT: policy_pb2.WHEN_EXCEEDED_WAIT,
}
WHEN_EXCEEDED_FROM_PB = _inverse(WHEN_EXCEEDED_TO_PB)

BUDGET_KIND_TO_PB: Mapping[BudgetKind, policy_pb2.BudgetKind] = {
    BudgetKind.RATE_LIMIT: policy_pb2.BUDGET_KIND_RATE_LIMIT,
    BudgetKind.RETRY_BUDGET: policy_pb2.BUDGET_KIND_RETRY_BUDGET,
}
BUDGET_KIND_FROM_PB = _inverse(BUDGET_KIND_TO_PB)
