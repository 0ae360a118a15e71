"""A breaker's identity: the one type for it, and the one place it is derived from a target.

Every breaker, in an agent or in the control plane's stores, is a
``BreakerKey``, the value twin of ``fusebox.v1.BreakerKey{namespace, spec,
kind, target, method}``; agents that load the same spec and call the same
target share one cluster-wide breaker. ``namespace`` and ``spec`` name the
spec that defined the breaker policy (``TargetPolicy.spec_namespace`` /
``spec_name``), not the calling app's namespace.

=========  ===========================  ====================================
kind       ``target``                   ``method``
=========  ===========================  ====================================
app        the called app-id (also      the method, ``""`` when the call has
           when a default slot applies) none
actor      the actor type               the actor id for an id-scoped
                                        breaker, ``""`` for a type-scoped one
component  the component name           ``"outbound"`` or ``"inbound"``
=========  ===========================  ====================================

A key is written three ways, each for its readers:

* ``str(key)``, the full key as people type it (``fusebox breakers get``):
  ``default/resiliency/app/order-processor/orders``, the method left out when empty;
* ``key.display_name``, the name Dapr prints in its logs: ``order-processor:orders``;
* ``key.encode()``, every part percent-encoded, for store keys and log fields
  that must decode back exactly (``BreakerKey.decode``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from fusebox.agent.policy import Direction, TargetKind, TargetPolicy
from fusebox.agent.wire_enums import TARGET_KIND_FROM_PB, TARGET_KIND_TO_PB
from fusebox.v1 import policy_pb2

__all__ = [
    "BreakerKey",
    "actor_breaker_key",
    "app_breaker_key",
    "component_breaker_key",
]

_ENCODED_PARTS = 5



@dataclass(frozen=True, slots=True)
class BreakerKey:
    """Identity of one breaker shared by every agent holding it (= ``fusebox.v1.BreakerKey``).

    ``method`` is the app method for apps, the actor id for actor breakers
    scoped by id and the direction for components; empty otherwise.

    >>> key = BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "orders")
    >>> key.display_name
    'order-processor:orders'
    >>> str(key)
    'default/resiliency/app/order-processor/orders'
    """

    namespace: str
    spec: str
    kind: TargetKind
    target: str
    method: str = ""

    @property
    def display_name(self) -> str:
        """The name Dapr prints, as the agent's registry names its breakers:
        ``app:method`` (or ``app``), ``actorType-actorId`` (or ``actorType``),
        ``component`` (its direction, carried in ``method``, is not shown)."""
        if not self.method or self.kind is TargetKind.COMPONENT:
            return self.target  # a component's "method" is its direction
        separator = ":" if self.kind is TargetKind.APP else "-"
        return f"{self.target}{separator}{self.method}"

    def encode(self) -> str:
        """``namespace/spec/kind/target/method``, each part percent-encoded.

        Every character but ASCII letters, digits and ``_.-~`` is escaped, so
        the text holds no ``/``, ``:``, ``{``, ``}`` or spaces of its own: it is
        safe inside a Redis key (no stray hash tag) and decodes unambiguously.
        """
        parts = (self.namespace, self.spec, self.kind.value, self.target, self.method)
        return "/".join(quote(part, safe="") for part in parts)

    @classmethod
    def decode(cls, text: str) -> BreakerKey:
        """The inverse of ``encode``; ``ValueError`` on anything else."""
        parts = text.split("/")
        if len(parts) != _ENCODED_PARTS:
            raise ValueError(
                f"invalid breaker key {text!r}: expected namespace/spec/kind/target/method"
            )
        namespace, spec, kind, target, method = (unquote(part) for part in parts)
        try:
            target_kind = TargetKind(kind)
        except ValueError:
            raise ValueError(
                f"invalid breaker key {text!r}: unknown kind {kind!r}; accepted: "
                + ", ".join(k.value for k in TargetKind)
            ) from None
        if not target:
            raise ValueError(f"invalid breaker key {text!r}: empty target")
        return cls(namespace, spec, target_kind, target, method)

    def to_proto(self) -> policy_pb2.BreakerKey:
        """The wire ``BreakerKey``."""
        return policy_pb2.BreakerKey(
            namespace=self.namespace, spec=self.spec, kind=TARGET_KIND_TO_PB[self.kind],
            target=self.target, method=self.method,
        )

    @classmethod
    def from_proto(cls, message: policy_pb2.BreakerKey) -> BreakerKey:
        """The key a wire message names; ``ValueError`` naming the field for an invalid one.

        What the control plane uses on everything an agent or the CLI sends.
        """
        kind = TARGET_KIND_FROM_PB.get(message.kind)
        if kind is None:
            raise ValueError(
                f"key.kind: unknown target kind {message.kind}; accepted: "
                "TARGET_KIND_APP, TARGET_KIND_ACTOR, TARGET_KIND_COMPONENT"
            )
        if not message.target:
            raise ValueError(
                "key.target: must not be empty (the app-id, actor type or component)"
            )
        return cls(message.namespace, message.spec, kind, message.target, message.method)

    @classmethod
    def try_from_proto(cls, message: policy_pb2.BreakerKey) -> BreakerKey | None:
        """The key, or ``None`` when its kind is unspecified or unknown to this version.

        What an agent uses on what the server sends: a key it cannot name
        cannot be one of its breakers, and is ignored.
        """
        kind = TARGET_KIND_FROM_PB.get(message.kind)
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
