"""Dapr's reserved ``Default…Policy`` names and the order they are tried in.

Mirrors ``expandPolicyTemplate``/``getPolicyLevels`` in dapr/dapr
``pkg/resiliency/resiliency.go``: the template ``Default%s<Kind>Policy`` is
filled with each level of the target type, most specific first, then with ""
(the top-level ``Default<Kind>Policy``). Each policy kind is looked up on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from fusebox.agent.policy import Direction


class PolicyKind(enum.Enum):
    """The policy kinds Dapr has default templates for (the value is the name part)."""

    TIMEOUT = "Timeout"
    RETRY = "Retry"
    CIRCUIT_BREAKER = "CircuitBreaker"


# Dapr's ComponentType constants (the word in a typed default's name) mapped to
# the prefix of a Dapr component's `spec.type` (`state.redis` -> "state"), which
# is what an agent passes as `component_type` to ResolvedPolicies.lookup.
COMPONENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "Binding": "bindings",
        "Configuration": "configuration",
        "Crypto": "crypto",
        "Lock": "lock",
        "Pubsub": "pubsub",
        "Secretstore": "secretstores",
        "Statestore": "state",
    }
)
"""Dapr component type word in default policy names -> component type prefix."""

_DIRECTION_WORDS = {Direction.INBOUND: "Inbound", Direction.OUTBOUND: "Outbound"}


def default_name(kind: PolicyKind, level: str) -> str:
    """``default_name(PolicyKind.RETRY, "App")`` is ``"DefaultAppRetryPolicy"``."""
    return f"Default{level}{kind.value}Policy"


def app_levels() -> tuple[str, ...]:
    return ("App", "")


def actor_levels() -> tuple[str, ...]:
    return ("Actor", "")


def component_levels(direction: Direction, type_word: str = "") -> tuple[str, ...]:
    """Levels for a component operation; ``type_word`` is a key of COMPONENT_TYPES."""
    word = _DIRECTION_WORDS[direction]
    untyped = (f"Component{word}", "Component", "")
    return (f"{type_word}Component{word}", *untyped) if type_word else untyped


def typed_component_level(direction: Direction, type_word: str) -> str:
    """The one level that belongs to a component type (the others are shared)."""
    return f"{type_word}Component{_DIRECTION_WORDS[direction]}"
