"""Values of cluster-wide circuit breakers: identity, events, snapshots, reports, leases.

These are what the breaker stores (``fusebox.controlplane.breakers.store``) take and
return; each maps 1:1 onto a message of ``fusebox/v1/breaker.proto`` or
``fusebox.agent.proto`` (``BreakerKey``, ``BreakerTransition``, ``Breaker``,
``BreakerOutcomes``, ``AcquireProbeLeaseResponse``).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote

from fusebox.agent.breaker import BreakerState, Counts
from fusebox.agent.policy import CircuitBreakerPolicy, TargetKind
from fusebox.v1 import policy_pb2

__all__ = [
    "FAILING_INSTANCES_SHOWN",
    "BreakerEvent",
    "BreakerId",
    "BreakerNotFound",
    "BreakerSnapshot",
    "Cause",
    "LeaseGrant",
    "OutcomeBatch",
    "Override",
    "OverrideInfo",
    "breaker_id_from_proto",
    "breaker_id_to_proto",
]

_ENCODED_PARTS = 5

#: How many failing instance names a snapshot carries (the count is always whole).
FAILING_INSTANCES_SHOWN = 100


@dataclass(frozen=True, slots=True)
class BreakerId:
    """Identity of one breaker shared by every agent holding it (= ``fusebox.v1.BreakerKey``).

    ``method`` is the app method for apps and the actor id for actor breakers
    scoped by id; empty otherwise.

    >>> key = BreakerId("default", "resiliency", TargetKind.APP, "order-processor", "orders")
    >>> key.display_name
    'order-processor:orders'
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
    def decode(cls, text: str) -> BreakerId:
        """The inverse of ``encode``; ``ValueError`` on anything else."""
        parts = text.split("/")
        if len(parts) != _ENCODED_PARTS:
            raise ValueError(
                f"invalid breaker id {text!r}: expected namespace/spec/kind/target/method"
            )
        namespace, spec, kind, target, method = (unquote(part) for part in parts)
        try:
            target_kind = TargetKind(kind)
        except ValueError:
            raise ValueError(
                f"invalid breaker id {text!r}: unknown kind {kind!r}; accepted: "
                + ", ".join(k.value for k in TargetKind)
            ) from None
        if not target:
            raise ValueError(f"invalid breaker id {text!r}: empty target")
        return cls(namespace, spec, target_kind, target, method)

    def __str__(self) -> str:
        return self.display_name


_KIND_TO_PB = {
    TargetKind.APP: policy_pb2.TARGET_KIND_APP,
    TargetKind.ACTOR: policy_pb2.TARGET_KIND_ACTOR,
    TargetKind.COMPONENT: policy_pb2.TARGET_KIND_COMPONENT,
}
_KIND_FROM_PB = {value: kind for kind, value in _KIND_TO_PB.items()}


def breaker_id_to_proto(breaker_id: BreakerId) -> policy_pb2.BreakerKey:
    """The wire ``BreakerKey`` of a breaker id."""
    return policy_pb2.BreakerKey(
        namespace=breaker_id.namespace,
        spec=breaker_id.spec,
        kind=_KIND_TO_PB[breaker_id.kind],
        target=breaker_id.target,
        method=breaker_id.method,
    )


def breaker_id_from_proto(message: policy_pb2.BreakerKey) -> BreakerId:
    """A breaker id from the wire; ``ValueError`` naming the field for an invalid key."""
    kind = _KIND_FROM_PB.get(message.kind)
    if kind is None:
        raise ValueError(
            f"key.kind: unknown target kind {message.kind}; accepted: "
            "TARGET_KIND_APP, TARGET_KIND_ACTOR, TARGET_KIND_COMPONENT"
        )
    if not message.target:
        raise ValueError("key.target: must not be empty (the app-id, actor type or component)")
    return BreakerId(message.namespace, message.spec, kind, message.target, message.method)


class Override(enum.Enum):
    """An operator's decision that wins over the state machine (= ``BreakerOverride``)."""

    FORCE_OPEN = "force_open"  # every call fails fast
    FORCE_CLOSED = "force_closed"  # every call passes; outcomes are not counted
    DISABLED = "disabled"  # no breaker at all: every call passes, nothing counted


class Cause(enum.Enum):
    """Why a breaker changed state (= ``fusebox.v1.TransitionCause``)."""

    TRIP = "trip"
    TIMEOUT = "timeout"
    PROBE_SUCCESS = "probe_success"
    PROBE_FAILURE = "probe_failure"
    OVERRIDE = "override"
    RESET = "reset"
    POLICY_CHANGE = "policy_change"


class BreakerNotFound(KeyError):
    """No state exists for this breaker (no agent has reported on it yet)."""

    def __init__(self, breaker_id: BreakerId) -> None:
        super().__init__(breaker_id)
        self.breaker_id = breaker_id

    def __str__(self) -> str:
        return (
            f"no circuit breaker {self.breaker_id.display_name!r} "
            f"({self.breaker_id.encode()}): no agent has reported on it"
        )


@dataclass(frozen=True, slots=True)
class OverrideInfo:
    """An active override; ``expires_at`` (unix seconds) ``None`` means until cleared."""

    override: Override
    reason: str
    expires_at: float | None
    set_by: str


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """One change of a breaker's (effective) state: what the transitions stream carries."""

    id: BreakerId
    from_state: BreakerState
    to_state: BreakerState
    generation: int
    cause: Cause
    at: float  # unix seconds
    instance_id: str = ""  # the agent whose report caused it, if any
    detail: str = ""  # e.g. the override reason
    open_until: float | None = None  # unix seconds, when to_state is open by the machine
    stream_id: str = ""  # position in the stream ("" before it is written)


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    """A breaker as the stores hold it. ``state`` is effective (an override wins);
    ``counts`` read zero once a closed ``interval`` window has passed.

    Quorum policies only (``policy.quorum``), for the current window while
    closed (empty once it has passed, like the counts): ``failing_instances``
    are the first ``FAILING_INSTANCES_SHOWN`` names, sorted, of the instances
    that reported a failure, ``failing_instance_count`` how many there are,
    ``reporting_instance_count`` how many instances reported any outcome.
    """

    id: BreakerId
    policy: CircuitBreakerPolicy
    state: BreakerState
    generation: int
    counts: Counts
    open_until: float | None
    override: OverrideInfo | None
    active_leases: int
    updated_at: float
    failing_instances: tuple[str, ...] = ()
    failing_instance_count: int = 0
    reporting_instance_count: int = 0


@dataclass(frozen=True, slots=True)
class OutcomeBatch:
    """Outcomes of one breaker from one agent report (or several, merged), in order.

    ``runs``: ``+n`` is n successes, ``-n`` n failures. A half-open probe's
    outcome carries the ``lease_id`` it was granted. ``run_instances``, when
    not empty, names the instance of each run (same length as ``runs``; the
    server fills it for quorum policies, whose stores attribute every outcome);
    empty, every run is ``instance_id``'s. Events caused by a run name its
    instance.
    """

    id: BreakerId
    policy: CircuitBreakerPolicy
    runs: tuple[int, ...]
    instance_id: str
    lease_id: str = ""
    run_instances: tuple[str, ...] = ()

    def check(self) -> None:
        """``ValueError`` unless ``run_instances`` is empty or names every run.

        The stores check every batch of an ``apply`` before applying any (not
        on construction: the server builds one batch per report).
        """
        if self.run_instances and len(self.run_instances) != len(self.runs):
            raise ValueError(
                f"run_instances: {len(self.run_instances)} instances for {len(self.runs)} "
                f"runs of breaker {self.id.display_name!r}; expected one instance per run, "
                "or none"
            )

    def attributed_runs(self) -> Iterator[tuple[int, str]]:
        """Each run with the instance it belongs to (see ``check``)."""
        if not self.run_instances:
            return zip(self.runs, itertools.repeat(self.instance_id))
        return zip(self.runs, self.run_instances, strict=True)


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """The answer to a half-open probe lease request (= ``AcquireProbeLeaseResponse``)."""

    granted: bool
    lease_id: str  # "" when not granted
    expires_at: float  # unix seconds; 0 when not granted
    state: BreakerState  # the effective state
    generation: int
