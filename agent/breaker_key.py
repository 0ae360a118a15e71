"""A breaker's identity on the wire: the one place it is derived from a call target.

Every agent breaker maps to ``fusebox.v1.BreakerKey{namespace, spec, kind,
target, method}``; agents that load the same spec and call the same target
share one cluster-wide breaker. ``namespace`` and ``spec`` name the spec that
defined the breaker policy (``TargetPolicy.spec_namespace`` / ``spec_name``),
not the calling app's namespace.

=========  ===========================  ====================================
kind       ``target``                   ``method``
=========  ===========================  ====================================
app        the called app-id (also      the method, ``""`` when the call has
           when a default slot applies) none
actor      the actor type               the actor id for an id-scoped
                                        breaker, ``""`` for a type-scoped one
component  the component name           ``"outbound"`` or ``"inbound"``
=========  ===========================  ====================================
"""

from __future__ import annotations

from dataclasses import dataclass

from fusebox.agent.policy import Direction, TargetKind, TargetPolicy
from fusebox.v1 import policy_pb2

_KIND_TO_PB = {
    TargetKind.APP: policy_pb2.TARGET_KIND_APP,
    TargetKind.ACTOR: policy_pb2.TARGET_KIND_ACTOR,
    TargetKind.COMPONENT: policy_pb2.TARGET_KIND_COMPONENT,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}


@dataclass(frozen=True, slots=True)
class BreakerKey:
    """The hashable, agent-side twin of ``fusebox.v1.BreakerKey``."""

    namespace: str
    spec: str
    kind: TargetKind
    target: str
    method: str = ""

    def to_proto(self) -> policy_pb2.BreakerKey:
        return policy_pb2.BreakerKey(
            namespace=self.namespace, spec=self.spec, kind=_KIND_TO_PB[self.kind],
            target=self.target, method=self.method,
        )

    @classmethod
    def from_proto(cls, message: policy_pb2.BreakerKey) -> BreakerKey | None:
        """The key, or ``None`` when its kind is unspecified or unknown."""
        kind = _KIND_FROM_PB.get(message.kind)
        if kind is None:
            return None
        return cls(message.namespace, message.spec, kind, message.target, message.method)

    def __str__(self) -> str:
        method = f"/{self.method}" if self.method else ""
        return f"{self.namespace}/{self.spec}/{self.kind.value}/{self.target}{method}"


def app_breaker_key(target: TargetPolicy, app_id: str, method: str | None) -> BreakerKey:
    """The key of the breaker guarding calls to ``app_id`` (and ``method``)."""
    return BreakerKey(target.spec_namespace, target.spec_name, TargetKind.APP, app_id,
                      method or "")


def actor_breaker_key(target: TargetPolicy, actor_type: str, actor_id: str | None) -> BreakerKey:
    """The key of an actor type's breaker (``actor_id`` None) or of one actor id's."""
    return BreakerKey(target.spec_namespace, target.spec_name, TargetKind.ACTOR, actor_type,
                      actor_id or "")


def component_breaker_key(
    target: TargetPolicy, component: str, direction: Direction | None
) -> BreakerKey:
    """The key of a component's breaker in one direction (outbound when unspecified)."""
    return BreakerKey(target.spec_namespace, target.spec_name, TargetKind.COMPONENT, component,
                      (direction or Direction.OUTBOUND).value)
