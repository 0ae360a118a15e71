"""Values of cluster-wide circuit breakers: events, snapshots, reports, leases.

These are what the breaker stores (``fusebox.controlplane.breakers.store``) take and
return; each maps 1:1 onto a message of ``fusebox/v1/breaker.proto`` or
``fusebox/v1/agent.proto`` (``BreakerTransition``, ``Breaker``, ``BreakerOutcomes``,
``AcquireProbeLeaseResponse``). The words they use are the agent's, shared
by both sides: a breaker's identity is ``fusebox.agent.breaker_key.BreakerKey``,
its state, override and transition cause are ``BreakerState``,
``BreakerOverride`` and ``TransitionCause`` of ``fusebox.agent.breaker``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from fusebox.agent.breaker import BreakerOverride, BreakerState, Counts, TransitionCause
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy, TargetKind
from fusebox.v1 import policy_pb2

__all__ = [
    "FAILING_INSTANCES_SHOWN",
    "BreakerEvent",
    "BreakerNotFound",
    "BreakerSnapshot",
    "BreakerTarget",
    "LeaseGrant",
    "OutcomeBatch",
    "OverrideInfo",
    "TargetOverride",
]

#: How many failing instance names a snapshot carries (the count is always whole).
FAILING_INSTANCES_SHOWN = 100


class BreakerNotFound(KeyError):
    """No state exists for this breaker (no agent has reported on it, and no
    override was set on it ahead of use)."""

    def __init__(self, key: BreakerKey) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return (
            f"no circuit breaker {self.key.display_name!r} "
            f"({self.key.encode()}): no agent has reported on it"
        )


@dataclass(frozen=True, slots=True)
class BreakerTarget:
    """Every breaker of one spec target: a ``BreakerKey`` without its last part.

    That is every method of an app, every actor id of an actor type (and its
    type-scoped breaker), both directions of a component. A target override
    (``TargetOverride``) is set on one.

    >>> target = BreakerTarget("default", "resiliency", TargetKind.APP, "order-processor")
    >>> str(target), target.display_name
    ('default/resiliency/app/order-processor', 'order-processor:*')
    >>> target.covers(BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "x"))
    True
    """

    namespace: str
    spec: str
    kind: TargetKind
    target: str

    @classmethod
    def of(cls, key: BreakerKey) -> BreakerTarget:
        """The target ``key`` is a breaker of."""
        return cls(key.namespace, key.spec, key.kind, key.target)

    def covers(self, key: BreakerKey) -> bool:
        return BreakerTarget.of(key) == self

    def encode(self) -> str:
        """``BreakerKey.encode()`` of its breakers without the last ``/<method>``:
        the encoding leaves no ``/`` inside a part, so ``encode() + "/"`` is a
        prefix of exactly the encoded keys of its breakers."""
        return BreakerKey(self.namespace, self.spec, self.kind, self.target).encode()[:-1]

    @classmethod
    def decode(cls, text: str) -> BreakerTarget:
        """The inverse of ``encode``; ``ValueError`` on anything else."""
        return cls.of(BreakerKey.decode(text + "/"))

    @property
    def display_name(self) -> str:
        """What audit entries and messages call it: ``order-processor:*``,
        ``cart-*`` (actor type), ``statestore`` (a component's breakers are
        shown by its name anyway)."""
        if self.kind is TargetKind.COMPONENT:
            return self.target
        return BreakerKey(self.namespace, self.spec, self.kind, self.target, "*").display_name

    def to_proto(self) -> policy_pb2.BreakerKey:
        """The wire ``BreakerKey`` with no method (how ``SetOverrideRequest`` with
        ``all_methods`` and ``TargetOverride`` carry a target)."""
        return BreakerKey(self.namespace, self.spec, self.kind, self.target).to_proto()

    def __str__(self) -> str:
        return f"{self.namespace}/{self.spec}/{self.kind.value}/{self.target}"


@dataclass(frozen=True, slots=True)
class OverrideInfo:
    """An active override; ``expires_at`` (unix seconds) ``None`` means until cleared."""

    override: BreakerOverride
    reason: str
    expires_at: float | None
    set_by: str


@dataclass(frozen=True, slots=True)
class TargetOverride:
    """An override on every breaker of a target, existing and future, while in force.

    ``detail`` is what the ``OVERRIDE`` event of a breaker created under it
    says (the reason and who set it, as the events of the breakers it was set on).
    """

    target: BreakerTarget
    info: OverrideInfo
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """One change of a breaker's (effective) state: what the transitions stream carries."""

    key: BreakerKey
    from_state: BreakerState
    to_state: BreakerState
    generation: int
    cause: TransitionCause
    at: float  # unix seconds
    instance_id: str = ""  # the agent whose report caused it, if any
    detail: str = ""  # e.g. the override reason
    open_until: float | None = None  # unix seconds, when to_state is open by the machine
    stream_id: str = ""  # position in the stream ("" before it is written)
    #: Where a reader resumes to get the events after this one (``read_events`` sets it;
    #: a store with several streams needs more than ``stream_id`` for that).
    position: str = ""


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

    key: BreakerKey
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

    key: BreakerKey
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
                f"runs of breaker {self.key.display_name!r}; expected one instance per run, "
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
