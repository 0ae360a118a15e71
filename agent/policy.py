"""Runtime policy values: what a resolved spec means, independent of YAML.

These frozen dataclasses are the one representation of a policy shared by the
control plane (its spec model and resolver produce them) and the agent (its
executor consumes them). ``to_proto``/``from_proto`` convert to and from the
wire messages in ``fusebox/v1/policy.proto``. Durations are float seconds.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from google.protobuf.duration_pb2 import Duration

from fusebox.agent._policy_enums import BackoffKind as BackoffKind
from fusebox.agent._policy_enums import BreakerScope as BreakerScope
from fusebox.agent._policy_enums import Direction as Direction
from fusebox.agent._policy_enums import RateLimitScope as RateLimitScope
from fusebox.agent._policy_enums import TargetKind as TargetKind
from fusebox.agent._policy_enums import WhenExceeded as WhenExceeded
from fusebox.agent.wire_enums import (
    BACKOFF_FROM_PB,
    BACKOFF_TO_PB,
    BREAKER_SCOPE_FROM_PB,
    BREAKER_SCOPE_TO_PB,
    DIRECTION_FROM_PB,
    DIRECTION_TO_PB,
    RATE_LIMIT_SCOPE_FROM_PB,
    RATE_LIMIT_SCOPE_TO_PB,
    TARGET_KIND_FROM_PB,
    TARGET_KIND_TO_PB,
    WHEN_EXCEEDED_FROM_PB,
    WHEN_EXCEEDED_TO_PB,
)
from fusebox.v1 import policy_pb2 as pb

DEFAULT_TRIP = "consecutiveFailures > 5"
DEFAULT_CACHE_SIZE = 100


@dataclass(frozen=True, slots=True)
class StatusCodes:
    """A set of status codes as inclusive ranges; empty means "not restricted"."""

    ranges: tuple[tuple[int, int], ...] = ()

    def __contains__(self, code: object) -> bool:
        return isinstance(code, int) and any(lo <= code <= hi for lo, hi in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __str__(self) -> str:
        return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    name: str
    duration: float  # seconds; <= 0 means no timeout


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    name: str
    backoff: BackoffKind = BackoffKind.CONSTANT
    duration: float = 5.0
    max_interval: float = 60.0
    max_retries: int = -1  # -1: unlimited; N: N retries (N + 1 attempts)
    http_status_codes: StatusCodes = StatusCodes()
    grpc_status_codes: StatusCodes = StatusCodes()
    # Extensions: Dapr's hidden exponential parameters, and Retry-After.
    initial_interval: float = 0.5
    multiplier: float = 1.5
    randomization_factor: float = 0.5
    max_elapsed_time: float = 900.0
    honor_retry_after: bool = False


@dataclass(frozen=True, slots=True)
class BreakerQuorum:
    """Extension: how many distinct instances must fail before the *fleet* breaker opens.

    Counted over the current window (the instances that reported an outcome /
    a failure since the counts last reset). ``0`` leaves a rule out; a quorum
    from a spec sets at least one. Both set: both must hold.

    >>> BreakerQuorum(min_instances=2, min_share=0.5)
    BreakerQuorum(min_instances=2, min_share=0.5)
    """

    min_instances: int = 0  # at least this many distinct instances failed
    min_share: float = 0.0  # at least this share (0, 1] of the reporting instances failed


@dataclass(frozen=True, slots=True)
class CircuitBreakerPolicy:
    name: str
    max_requests: int = 1  # normalised: Dapr's 0 means 1
    interval: float = 0.0  # 0: counts never reset while closed
    timeout: float = 60.0  # normalised: Dapr's <= 0 means 60s
    trip: str = DEFAULT_TRIP
    quorum: BreakerQuorum | None = None  # extension: fleet breakers only; None: no quorum


@dataclass(frozen=True, slots=True)
class FallbackResponse:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class FallbackPolicy:
    """Either a static ``response`` or the name of a callable registered in the agent."""

    name: str
    response: FallbackResponse | None = None
    function: str | None = None
    http_status_codes: StatusCodes = StatusCodes()
    grpc_status_codes: StatusCodes = StatusCodes()


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """Extension: at most ``limit`` calls per ``period`` to a target, fleet-wide.

    Each agent enforces its share with a token bucket of the fleet's rate and
    ``burst`` times its share (docs/budgets.md).

    >>> RateLimitPolicy("orders", limit=200, period=1.0).burst  # defaults to the limit
    200
    """

    name: str
    limit: int
    period: float = 1.0  # seconds
    burst: int = 0  # the fleet's bucket depth; 0 (not given): ``limit``
    scope: RateLimitScope = RateLimitScope.APP
    when_exceeded: WhenExceeded = WhenExceeded.REJECT
    max_wait: float = 1.0  # seconds; WAIT only
    count_retries: bool = True

    def __post_init__(self) -> None:
        if not self.burst:
            object.__setattr__(self, "burst", self.limit)


@dataclass(frozen=True, slots=True)
class RetryBudgetPolicy:
    """Extension: retries at most ``ratio`` of first attempts over ``window``,
    plus ``min_retries_per_second`` for the whole fleet (docs/budgets.md)."""

    name: str
    ratio: float = 0.2
    window: float = 10.0  # seconds
    min_retries_per_second: float = 10.0


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """Policies bound to one target, or to a default slot (``is_default``)."""

    kind: TargetKind
    name: str = ""  # "" for defaults
    direction: Direction | None = None  # components only
    component_type: str = ""  # defaults only; "" = any component type
    is_default: bool = False
    timeout: TimeoutPolicy | None = None
    retry: RetryPolicy | None = None
    circuit_breaker: CircuitBreakerPolicy | None = None
    fallback: FallbackPolicy | None = None
    circuit_breaker_scope: BreakerScope | None = None  # actors
    circuit_breaker_cache_size: int = DEFAULT_CACHE_SIZE
    spec_namespace: str = ""  # the spec that defined it: part of a breaker's identity
    spec_name: str = ""
    rate_limit: RateLimitPolicy | None = None  # extension; never in a default slot
    retry_budget: RetryBudgetPolicy | None = None  # extension; never in a default slot


def _frozen_map(m: Mapping[str, RetryPolicy] | None = None) -> Mapping[str, RetryPolicy]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True, slots=True)
class ResolvedPolicies:
    """Everything one (namespace, app-id) enforces, with Dapr's lookup rules."""

    namespace: str
    app_id: str
    targets: tuple[TargetPolicy, ...] = ()
    builtin_retries: Mapping[str, RetryPolicy] = field(default_factory=_frozen_map)
    digest: str = ""

    def lookup(
        self,
        kind: TargetKind,
        name: str,
        direction: Direction | None = None,
        component_type: str = "",
    ) -> TargetPolicy | None:
        """The explicit target entry if any, else the most specific default.

        Defaults apply only when no target entry exists (Dapr). For components,
        a default for the component's type wins over a type-less one.
        """
        best: TargetPolicy | None = None
        for target in self.targets:
            if target.kind is not kind or target.direction is not direction:
                continue
            if not target.is_default:
                if target.name == name:
                    return target
            elif (component_type and target.component_type == component_type) or (
                not target.component_type and best is None
            ):
                best = target
        return best


# ---- wire conversion -------------------------------------------------------

def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def _seconds(d: Duration) -> float:
    # Duration.ToNanoseconds, without its Python-level call: snapshots hold dozens.
    return (d.seconds * 1_000_000_000 + d.nanos) / 1e9


_ANY_CODE = StatusCodes()


def _codes_to_pb(codes: StatusCodes) -> list[pb.StatusCodeRange]:
    return [pb.StatusCodeRange(first=lo, last=hi) for lo, hi in codes.ranges]


def _codes_from_pb(ranges: Sequence[pb.StatusCodeRange]) -> StatusCodes:
    if not ranges:
        return _ANY_CODE
    return StatusCodes(tuple((r.first, r.last) for r in ranges))


def retry_to_proto(p: RetryPolicy) -> pb.RetryPolicy:
    return pb.RetryPolicy(
        name=p.name,
        backoff=BACKOFF_TO_PB[p.backoff],
        duration=_duration(p.duration),
        max_interval=_duration(p.max_interval),
        max_retries=p.max_retries,
        http_status_codes=_codes_to_pb(p.http_status_codes),
        grpc_status_codes=_codes_to_pb(p.grpc_status_codes),
        initial_interval=_duration(p.initial_interval),
        multiplier=p.multiplier,
        randomization_factor=p.randomization_factor,
        max_elapsed_time=_duration(p.max_elapsed_time),
        honor_retry_after=p.honor_retry_after,
    )


def retry_from_proto(m: pb.RetryPolicy) -> RetryPolicy:
    return RetryPolicy(
        name=m.name,
        backoff=BACKOFF_FROM_PB.get(m.backoff, BackoffKind.CONSTANT),
        duration=_seconds(m.duration),
        max_interval=_seconds(m.max_interval),
        max_retries=m.max_retries,
        http_status_codes=_codes_from_pb(m.http_status_codes),
        grpc_status_codes=_codes_from_pb(m.grpc_status_codes),
        initial_interval=_seconds(m.initial_interval),
        multiplier=m.multiplier,
        randomization_factor=m.randomization_factor,
        max_elapsed_time=_seconds(m.max_elapsed_time),
        honor_retry_after=m.honor_retry_after,
    )


def breaker_to_proto(p: CircuitBreakerPolicy) -> pb.CircuitBreakerPolicy:
    m = pb.CircuitBreakerPolicy(
        name=p.name,
        max_requests=p.max_requests,
        interval=_duration(p.interval),
        timeout=_duration(p.timeout),
        trip=p.trip,
    )
    if p.quorum is not None:
        m.quorum.CopyFrom(
            pb.BreakerQuorum(
                min_instances=p.quorum.min_instances, min_share=p.quorum.min_share
            )
        )
    return m


def breaker_from_proto(m: pb.CircuitBreakerPolicy) -> CircuitBreakerPolicy:
    quorum = None
    if m.HasField("quorum"):
        quorum = BreakerQuorum(min_instances=m.quorum.min_instances, min_share=m.quorum.min_share)
    return CircuitBreakerPolicy(
        name=m.name,
        max_requests=m.max_requests,
        interval=_seconds(m.interval),
        timeout=_seconds(m.timeout),
        trip=m.trip,
        quorum=quorum,
    )


def rate_limit_to_proto(p: RateLimitPolicy) -> pb.RateLimitPolicy:
    return pb.RateLimitPolicy(
        name=p.name,
        limit=p.limit,
        period=_duration(p.period),
        burst=p.burst,
        scope=RATE_LIMIT_SCOPE_TO_PB[p.scope],
        when_exceeded=WHEN_EXCEEDED_TO_PB[p.when_exceeded],
        max_wait=_duration(p.max_wait),
        count_retries=p.count_retries,
    )


def rate_limit_from_proto(m: pb.RateLimitPolicy) -> RateLimitPolicy:
    """Raises ValueError on a policy this agent cannot enforce (a newer peer's values)."""
    scope = RATE_LIMIT_SCOPE_FROM_PB.get(m.scope)
    when_exceeded = WHEN_EXCEEDED_FROM_PB.get(m.when_exceeded)
    period = _seconds(m.period)
    if scope is None or when_exceeded is None or m.limit < 1 or period <= 0:
        raise ValueError(f"rate limit {m.name!r}: scope {m.scope}, whenExceeded "
                         f"{m.when_exceeded}, limit {m.limit}, period {period}s: not enforceable")
    return RateLimitPolicy(
        name=m.name,
        limit=m.limit,
        period=period,
        burst=m.burst,
        scope=scope,
        when_exceeded=when_exceeded,
        max_wait=_seconds(m.max_wait),
        count_retries=m.count_retries,
    )


def retry_budget_to_proto(p: RetryBudgetPolicy) -> pb.RetryBudgetPolicy:
    return pb.RetryBudgetPolicy(
        name=p.name,
        ratio=p.ratio,
        window=_duration(p.window),
        min_retries_per_second=p.min_retries_per_second,
    )


def retry_budget_from_proto(m: pb.RetryBudgetPolicy) -> RetryBudgetPolicy:
    """Raises ValueError on a budget this agent cannot enforce."""
    window = _seconds(m.window)
    if not 0 < m.ratio <= 1 or window <= 0 or m.min_retries_per_second < 0:
        raise ValueError(f"retry budget {m.name!r}: ratio {m.ratio}, window {window}s, "
                         f"minRetriesPerSecond {m.min_retries_per_second}: not enforceable")
    return RetryBudgetPolicy(
        name=m.name,
        ratio=m.ratio,
        window=window,
        min_retries_per_second=m.min_retries_per_second,
    )


def _fallback_to_proto(p: FallbackPolicy) -> pb.FallbackPolicy:
    m = pb.FallbackPolicy(
        name=p.name,
        http_status_codes=_codes_to_pb(p.http_status_codes),
        grpc_status_codes=_codes_to_pb(p.grpc_status_codes),
    )
    if p.response is not None:
        m.response.CopyFrom(
            pb.FallbackResponse(
                status=p.response.status, headers=dict(p.response.headers), body=p.response.body
            )
        )
    elif p.function is not None:
        m.function = p.function
    return m


def _fallback_from_proto(m: pb.FallbackPolicy) -> FallbackPolicy:
    action = m.WhichOneof("action")
    response = None
    if action == "response":
        response = FallbackResponse(
            status=m.response.status,
            headers=tuple(sorted(m.response.headers.items())),
            body=m.response.body,
        )
    return FallbackPolicy(
        name=m.name,
        response=response,
        function=m.function if action == "function" else None,
        http_status_codes=_codes_from_pb(m.http_status_codes),
        grpc_status_codes=_codes_from_pb(m.grpc_status_codes),
    )


def target_to_proto(t: TargetPolicy) -> pb.TargetPolicy:
    m = pb.TargetPolicy(
        kind=TARGET_KIND_TO_PB[t.kind],
        name=t.name,
        direction=DIRECTION_TO_PB[t.direction],
        component_type=t.component_type,
        is_default=t.is_default,
        circuit_breaker_scope=BREAKER_SCOPE_TO_PB[t.circuit_breaker_scope],
        circuit_breaker_cache_size=t.circuit_breaker_cache_size,
        spec_namespace=t.spec_namespace,
        spec_name=t.spec_name,
    )
    if t.timeout is not None:
        m.timeout.CopyFrom(
            pb.TimeoutPolicy(name=t.timeout.name, duration=_duration(t.timeout.duration))
        )
    if t.retry is not None:
        m.retry.CopyFrom(retry_to_proto(t.retry))
    if t.circuit_breaker is not None:
        m.circuit_breaker.CopyFrom(breaker_to_proto(t.circuit_breaker))
    if t.fallback is not None:
        m.fallback.CopyFrom(_fallback_to_proto(t.fallback))
    if t.rate_limit is not None:
        m.rate_limit.CopyFrom(rate_limit_to_proto(t.rate_limit))
    if t.retry_budget is not None:
        m.retry_budget.CopyFrom(retry_budget_to_proto(t.retry_budget))
    return m


def target_from_proto(m: pb.TargetPolicy) -> TargetPolicy:
    return TargetPolicy(
        kind=TARGET_KIND_FROM_PB[m.kind],
        name=m.name,
        direction=DIRECTION_FROM_PB.get(m.direction),
        component_type=m.component_type,
        is_default=m.is_default,
        timeout=(
            TimeoutPolicy(m.timeout.name, _seconds(m.timeout.duration))
            if m.HasField("timeout")
            else None
        ),
        retry=retry_from_proto(m.retry) if m.HasField("retry") else None,
        circuit_breaker=(
            breaker_from_proto(m.circuit_breaker) if m.HasField("circuit_breaker") else None
        ),
        fallback=_fallback_from_proto(m.fallback) if m.HasField("fallback") else None,
        circuit_breaker_scope=BREAKER_SCOPE_FROM_PB.get(m.circuit_breaker_scope),
        circuit_breaker_cache_size=m.circuit_breaker_cache_size or DEFAULT_CACHE_SIZE,
        spec_namespace=m.spec_namespace,
        spec_name=m.spec_name,
        rate_limit=rate_limit_from_proto(m.rate_limit) if m.HasField("rate_limit") else None,
        retry_budget=(
            retry_budget_from_proto(m.retry_budget) if m.HasField("retry_budget") else None
        ),
    )


def resolved_to_proto(r: ResolvedPolicies) -> pb.ResolvedPolicies:
    """Serialise, filling in the content digest when ``r.digest`` is empty."""
    m = pb.ResolvedPolicies(
        namespace=r.namespace,
        app_id=r.app_id,
        targets=[target_to_proto(t) for t in r.targets],
    )
    for name, policy in r.builtin_retries.items():
        m.builtin_retries[name].CopyFrom(retry_to_proto(policy))
    m.digest = r.digest or policies_digest(m)
    return m


#: Recently decoded snapshots by their bytes. The result is immutable, so the
#: agents of one process (tests, the scale harness, a sidecar) and reconnects
#: that bring the same snapshot again share one decoding. Links of sync agents
#: decode on their own threads: the lock (never taken on the call path) keeps
#: the lookups and evictions whole.
_DECODED: dict[bytes, ResolvedPolicies] = {}
_DECODED_MAX = 8
_DECODED_LOCK = threading.Lock()


def resolved_from_proto(m: pb.ResolvedPolicies) -> ResolvedPolicies:
    """Raises KeyError/ValueError on a message this agent cannot understand."""
    key = m.SerializeToString(deterministic=True)
    with _DECODED_LOCK:
        decoded = _DECODED.get(key)
    if decoded is None:
        decoded = _decode_resolved(m)  # outside the lock: it may raise, and takes ~30 µs
        with _DECODED_LOCK:
            if len(_DECODED) >= _DECODED_MAX:
                del _DECODED[next(iter(_DECODED))]  # the oldest
            _DECODED[key] = decoded
    return decoded


def _decode_resolved(m: pb.ResolvedPolicies) -> ResolvedPolicies:
    targets = []
    for t in m.targets:
        if t.kind not in TARGET_KIND_FROM_PB:
            raise ValueError(f"unknown target kind {t.kind} for target {t.name!r}")
        targets.append(target_from_proto(t))
    return ResolvedPolicies(
        namespace=m.namespace,
        app_id=m.app_id,
        targets=tuple(targets),
        builtin_retries=_frozen_map(
            {name: retry_from_proto(p) for name, p in m.builtin_retries.items()}
        ),
        digest=m.digest,
    )


def policies_digest(m: pb.ResolvedPolicies) -> str:
    """Content digest of resolved policies (the digest field itself excluded)."""
    copy = pb.ResolvedPolicies()
    copy.CopyFrom(m)
    copy.digest = ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]
