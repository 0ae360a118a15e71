"""OpenTelemetry for the agent: metrics read from its counters, retries on the caller's trace.

Imported only when the OpenTelemetry API is installed (``pip install
'fusebox-resilience[otel]'``), by ``fusebox.agent.events.start_telemetry`` when an
agent is made: ``import fusebox.agent`` never imports ``opentelemetry``. The
API only: the application's SDK, if it set one, collects and exports; without
one, everything here is the API's no-op. docs/observability.md has the table.

Metrics are asynchronous instruments
------------------------------------
The agent already counts per target on the call path, lock-free
(``StatsCounter``: one ``itertools.count`` step per outcome). Every instrument
here is an *observable* one: its callback reads those counters, the live
breakers and the policy link's snapshot counters when a reader collects. A
guarded call pays nothing for metrics, with or without an SDK; a synchronous
``Counter.add`` per outcome would cost about as much as the whole guarded call
with an SDK (attribute hashing, a lock) and an attribute dict even without
one. What is derived costs nothing either: attempts are calls + retries
(every call makes one attempt, every retry one more).

Instruments exist once per meter provider (the global one, as OpenTelemetry
libraries use it, or one given as ``meter_provider=``); their callbacks read
every live agent registered with it. Names and attributes are Dapr's
(``resiliency/count`` → ``fusebox.resiliency.count``, ``app_id``, ``name`` (the
spec), ``policy`` (the kind), ``namespace``, ``flow_direction``, ``target``
(``app_<id>``), ``status``), spelled as OpenTelemetry names them: dots,
UCUM annotations as units, no ``_total`` (exporters add it). Like Dapr's,
attributes name the target app, not the method, so that paths never become
series: the counters of two methods of one app add up.

Traces are events on the caller's span
--------------------------------------
Once a call has *failed* an attempt, ``RetryContext`` asks for the recording
span of the caller's context; if there is one, every attempt of that call
becomes a ``fusebox.attempt`` event on it (``http.request.resend_count`` as
OpenTelemetry's HTTP conventions define it, the outcome, the breaker's
decision and state, the policy names), and a fallback a ``fusebox.fallback``
event. A call whose first attempt succeeds never looks (``_executor.tracing``).
The agent makes no spans of its own: client spans are the client
instrumentations' (one per attempt, see docs/observability.md), so they are
never duplicated.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from fusebox.agent import _executor
from fusebox.agent._errors import BreakerOpenError, PolicyTimeoutError
from fusebox.agent.breaker import BreakerState
from fusebox.agent.budget import BudgetKind
from fusebox.agent.events import StateChangeEvent, TargetStats, logger
from fusebox.agent.policy import TargetKind, TargetPolicy

if TYPE_CHECKING:
    from fusebox.agent._agent import _Core, _TargetKey
    from fusebox.agent._executor import CallPlan, RetryContext
    from fusebox.agent._live_breaker import Breaker

__all__ = ["INSTRUMENTS", "METER_NAME", "register"]

METER_NAME = "fusebox.agent"
try:
    VERSION = metadata.version("fusebox-resilience")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    VERSION = "0.0.0"

#: name: (kind, unit, description). docs/observability.md says what Dapr and
#: Resilience4j call each.
INSTRUMENTS: dict[str, tuple[str, str, str]] = {
    "fusebox.resiliency.count": (
        "counter", "{call}",
        "Calls a resiliency policy was applied to, per policy kind of the target (Dapr's "
        "resiliency/count)."),
    "fusebox.resiliency.activations": (
        "counter", "{activation}",
        "Times a policy acted after a failure: a retry, an attempt timed out, a fallback "
        "answered, a breaker changed state (status: the new state); Dapr's "
        "resiliency/activations_total."),
    "fusebox.resiliency.cb_state": (
        "gauge", "{breaker}",
        "1 for the state each live circuit breaker is in (status), 0 for the others; from "
        "its creation, closed (Dapr's resiliency/cb_state)."),
    "fusebox.resiliency.loaded": (
        "gauge", "{spec}",
        "1 per resiliency spec whose policies are in force (Dapr's resiliency/loaded)."),
    "fusebox.resiliency.calls": (
        "counter", "{call}", "Guarded calls, by outcome (success, failure)."),
    "fusebox.resiliency.attempts": (
        "counter", "{attempt}",
        "Attempts of guarded calls: calls + retries, rejected attempts included."),
    "fusebox.resiliency.rejections": (
        "counter", "{call}",
        "Calls a circuit breaker rejected without calling (Resilience4j's not permitted "
        "calls)."),
    "fusebox.resiliency.rate_limited": (
        "counter", "{attempt}",
        "Attempts a rate limit refused (fleet budgets): a refused first attempt ends the call "
        "with RateLimitedError (or its fallback), a refused retry is skipped."),
    "fusebox.resiliency.retries_skipped": (
        "counter", "{retry}",
        "Retries a retry budget skipped (fleet budgets): the call ended with its last failure "
        "or its fallback instead."),
    "fusebox.agent.budget.share": (
        "gauge", "1",
        "The fraction of each fleet budget this instance enforces: pushed by the control "
        "plane (source=pushed) or 1/fleet size (source=fallback)."),
    "fusebox.agent.policy.snapshots": (
        "counter", "{snapshot}",
        "Policy snapshots from the control plane, by result (applied, nacked)."),
    "fusebox.agent.policy.revision": (
        "gauge", "{revision}",
        "Store revision of the last snapshot applied (0: policies from the disk cache); "
        "digest and source name the policies in force."),
}

_STATES = (BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN)
_CB = "circuitbreaker"
_RATE_LIMIT, _RETRY_BUDGET = "ratelimit", "retrybudget"
_KINDS = (("timeout", "timeout"), ("retry", "retry"), (_CB, "circuit_breaker"),
          ("fallback", "fallback"), (_RATE_LIMIT, "rate_limit"), (_RETRY_BUDGET, "retry_budget"))
_BUDGET_POLICY = {BudgetKind.RATE_LIMIT: _RATE_LIMIT, BudgetKind.RETRY_BUDGET: _RETRY_BUDGET}

Attributes = dict[str, str]
_Key = tuple[tuple[str, str], ...]


def dapr_target(kind: TargetKind, name: str, component_type: str = "") -> str:
    """The ``target`` attribute as daprd writes it: ``app_<id>``, ``actor_<type>``,
    ``<componentType>_<name>`` (``component_<name>`` when the type is not known).

    >>> dapr_target(TargetKind.APP, "order-processor")
    'app_order-processor'
    """
    if kind is TargetKind.COMPONENT:
        return f"{component_type or 'component'}_{name}"
    return f"{kind.value}_{name}"


class _Target:
    """What the metrics say about one target: its attributes, which policy kinds it has."""

    __slots__ = ("attributes", "kinds")

    def __init__(self, attributes: Attributes, kinds: tuple[str, ...]) -> None:
        self.attributes = attributes
        self.kinds = kinds


class AgentMetrics:
    """One agent's side of the instruments: what their callbacks read of it.

    Holds the agent weakly (a collected agent drops out of the metrics), counts
    its breakers' state changes (a hook: changes are rare, never per call) and
    remembers each target's attributes, so a target whose handle was evicted
    keeps reporting under the same ones.
    """

    def __init__(self, core: _Core) -> None:
        self._core = weakref.ref(core)
        self._lock = threading.Lock()
        #: breaker name -> {state it changed to: times}
        self._transitions: dict[str, dict[BreakerState, int]] = {}
        self._snapshot: object = None  # the agent's policy snapshot the caches below hold
        self._by_key: dict[_TargetKey, _Target] = {}
        self._by_display: dict[str, _Target] = {}
        self._by_breaker: dict[str, _Target] = {}
        self._link: Any = None  # the last policy link seen, and the counts of earlier ones
        self._earlier = (0, 0)

    def on_state_change(self, event: StateChangeEvent) -> None:
        with self._lock:
            counts = self._transitions.setdefault(event.breaker, {})
            counts[event.to_state] = counts.get(event.to_state, 0) + 1

    # -- what the callbacks read ------------------------------------------------------

    def agent(self) -> _Core | None:
        return self._core()

    def targets(self, core: _Core) -> list[tuple[_Target, TargetStats]]:
        """Each target's attributes and counters."""
        self._refresh(core)
        out = []
        for display, stats in core.stats().items():
            target = self._by_display.get(display)
            if target is None:  # counted before any handle showed its policies: unlikely
                target = _Target(self._base(core, None, display), ())
            out.append((target, stats))
        return out

    def breakers(self, core: _Core) -> list[tuple[Attributes, Breaker]]:
        """Each live breaker with its target's attributes."""
        self._refresh(core)
        out = []
        for breaker in core._registry.breakers():
            target = self._by_breaker.get(breaker.name)
            attributes = target.attributes if target is not None else self._breaker_base(
                core, breaker)
            out.append((attributes, breaker))
        return out

    def transitions(self, core: _Core) -> list[tuple[Attributes, BreakerState, int]]:
        """State changes so far: (target attributes, the state changed to, times)."""
        self._refresh(core)
        with self._lock:
            counts = [(name, dict(per)) for name, per in self._transitions.items()]
        out = []
        for name, per in counts:
            target = self._by_breaker.get(name)
            attributes = target.attributes if target is not None else self._base(
                core, None, name)
            out += [(attributes, state, n) for state, n in per.items()]
        return out

    def snapshots(self, core: _Core) -> tuple[int, int, int, str] | None:
        """(applied, NACKed, revision, digest) of the agent's policy links; None: no link."""
        link = core._link
        if link is not None and link is not self._link:
            if self._link is not None:  # restarted: the earlier links' counts stay
                applied, nacked, _ = self._link.snapshot_counts
                self._earlier = (self._earlier[0] + applied, self._earlier[1] + nacked)
            self._link = link
        if self._link is None:
            return None
        applied, nacked, revision = self._link.snapshot_counts
        return (self._earlier[0] + applied, self._earlier[1] + nacked, revision,
                self._link.digest)

    # -- attributes ---------------------------------------------------------------------

    def _refresh(self, core: _Core) -> None:
        """Learn the attributes of the targets the agent's handles hold plans for."""
        snapshot = core._snapshot
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._by_key = {}
        policies = snapshot.policies
        for key, handle in list(core._handles.items()):
            plan = handle._plan
            if plan is None:
                continue
            target = self._by_key.get(key)
            if target is None:
                found = None if policies is None else policies.lookup(
                    key.kind, key.name, key.direction, key.component_type)
                kinds = tuple(kind for kind, field in _KINDS
                              if found is not None and getattr(found, field) is not None)
                target = self._by_key[key] = _Target(self._base(core, found, "", key), kinds)
            self._by_display[plan.target] = target
            if plan.breaker is not None:
                self._by_breaker[plan.breaker.name] = target

    @staticmethod
    def _base(core: _Core, found: TargetPolicy | None, display: str,
              key: _TargetKey | None = None) -> Attributes:
        if key is None:  # only a display name is known
            return {"app_id": core.app_id, "namespace": core.namespace, "name": "",
                    "flow_direction": "outbound", "target": f"app_{display.split(':')[0]}"}
        direction = key.direction.value if key.direction is not None else "outbound"
        return {
            "app_id": core.app_id,
            "namespace": (found.spec_namespace if found else "") or core.namespace,
            "name": found.spec_name if found else "",
            "flow_direction": direction,
            "target": dapr_target(key.kind, key.name, key.component_type),
        }

    @staticmethod
    def _breaker_base(core: _Core, breaker: Breaker) -> Attributes:
        key = breaker.key
        if key is None:
            return AgentMetrics._base(core, None, breaker.name)
        direction = key.method if key.kind is TargetKind.COMPONENT else "outbound"
        return {"app_id": core.app_id, "namespace": key.namespace or core.namespace,
                "name": key.spec, "flow_direction": direction or "outbound",
                "target": dapr_target(key.kind, key.target)}


# -- instruments ----------------------------------------------------------------------------


class _Sums:
    """Observations added up per attribute set (two methods of one app are one target)."""

    def __init__(self) -> None:
        self._values: dict[_Key, int] = {}

    def add(self, attributes: Attributes, value: int, **more: str) -> None:
        key = tuple(sorted({**attributes, **more}.items()))
        self._values[key] = self._values.get(key, 0) + value

    def set(self, attributes: Attributes, value: int, **more: str) -> None:
        self._values[tuple(sorted({**attributes, **more}.items()))] = value

    def observations(self) -> list[Observation]:
        return [Observation(value, dict(key)) for key, value in self._values.items()]


class _Instruments:
    """The instruments of one meter provider; their callbacks read every registered agent."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.agents: weakref.WeakSet[AgentMetrics] = weakref.WeakSet()
        callbacks = {
            "fusebox.resiliency.count": self._count,
            "fusebox.resiliency.activations": self._activations,
            "fusebox.resiliency.cb_state": self._cb_state,
            "fusebox.resiliency.loaded": self._loaded,
            "fusebox.resiliency.calls": self._calls,
            "fusebox.resiliency.attempts": self._attempts,
            "fusebox.resiliency.rejections": self._rejections,
            "fusebox.resiliency.rate_limited": self._rate_limited,
            "fusebox.resiliency.retries_skipped": self._retries_skipped,
            "fusebox.agent.budget.share": self._budget_share,
            "fusebox.agent.policy.snapshots": self._snapshots,
            "fusebox.agent.policy.revision": self._revision,
        }
        for name, (kind, unit, description) in INSTRUMENTS.items():
            create = (meter.create_observable_counter if kind == "counter"
                      else meter.create_observable_gauge)
            create(name, callbacks=[callbacks[name]], unit=unit, description=description)

    def _live(self) -> Iterable[tuple[AgentMetrics, _Core]]:
        for source in list(self.agents):
            core = source.agent()
            if core is not None:
                yield source, core

    def _per_target(self, observe: Any) -> Sequence[Observation]:
        sums = _Sums()
        for source, core in self._live():
            for target, stats in source.targets(core):
                observe(sums, target, stats)
        return sums.observations()

    def _count(self, options: CallbackOptions) -> Sequence[Observation]:
        def observe(sums: _Sums, target: _Target, stats: TargetStats) -> None:
            for kind in target.kinds:
                sums.add(target.attributes, stats.calls, policy=kind)
        return self._per_target(observe)

    def _activations(self, options: CallbackOptions) -> Sequence[Observation]:
        sums = _Sums()
        for source, core in self._live():
            for target, stats in source.targets(core):
                for kind, value in (("retry", stats.retries), ("timeout", stats.timeouts),
                                    ("fallback", stats.fallbacks)):
                    if kind in target.kinds or value:
                        sums.add(target.attributes, value, policy=kind)
            for attributes, _breaker in source.breakers(core):
                for state in _STATES:  # every series exists from the breaker's start
                    sums.add(attributes, 0, policy=_CB, status=state.value)
            for attributes, state, times in source.transitions(core):
                sums.add(attributes, times, policy=_CB, status=state.value)
        return sums.observations()

    def _cb_state(self, options: CallbackOptions) -> Sequence[Observation]:
        sums = _Sums()
        for source, core in self._live():
            for attributes, breaker in source.breakers(core):
                state = breaker.observe()  # an open breaker past its timeout reads half-open
                for each in _STATES:
                    sums.set(attributes, int(each is state), policy=_CB, status=each.value,
                             breaker=breaker.name)
        return sums.observations()

    def _loaded(self, options: CallbackOptions) -> Sequence[Observation]:
        sums = _Sums()
        for _source, core in self._live():
            policies = core.policies
            if policies is None:
                continue
            for namespace, name in {(t.spec_namespace, t.spec_name) for t in policies.targets}:
                sums.set({"app_id": core.app_id, "name": name,
                          "namespace": namespace or core.namespace}, 1)
        return sums.observations()

    def _calls(self, options: CallbackOptions) -> Sequence[Observation]:
        def observe(sums: _Sums, target: _Target, stats: TargetStats) -> None:
            sums.add(target.attributes, stats.successes, outcome="success")
            sums.add(target.attributes, stats.failures, outcome="failure")
        return self._per_target(observe)

    def _attempts(self, options: CallbackOptions) -> Sequence[Observation]:
        def observe(sums: _Sums, target: _Target, stats: TargetStats) -> None:
            sums.add(target.attributes, stats.calls + stats.retries)
        return self._per_target(observe)

    def _rejections(self, options: CallbackOptions) -> Sequence[Observation]:
        def observe(sums: _Sums, target: _Target, stats: TargetStats) -> None:
            if _CB in target.kinds or stats.rejected:
                sums.add(target.attributes, stats.rejected)
        return self._per_target(observe)

    def _rate_limited(self, options: CallbackOptions) -> Sequence[Observation]:
        def observe(sums: _Sums, target: _Target, stats: TargetStats) -> None:
            if _RATE_LIMIT in target.kinds or stats.rate_limited:
                sums.add(target.attributes, stats.rate_limited, policy=_RATE_LIMIT)
        return self._per_target(observe)

    def _retries_skipped(self, options: CallbackOptions) -> Sequence[Observation]:
        def observe(sums: _Sums, target: _Target, stats: TargetStats) -> None:
            if _RETRY_BUDGET in target.kinds or stats.retries_skipped:
                sums.add(target.attributes, stats.retries_skipped, policy=_RETRY_BUDGET)
        return self._per_target(observe)

    def _budget_share(self, options: CallbackOptions) -> Sequence[Observation]:
        out = []
        for _source, core in self._live():
            budgets = core._budgets
            for key in budgets.bound():
                out.append(Observation(budgets.share(key), {
                    "app_id": core.app_id, "namespace": key.namespace or core.namespace,
                    "name": key.spec,
                    "flow_direction": key.direction.value if key.direction else "outbound",
                    "target": dapr_target(key.target_kind, key.target),
                    "policy": _BUDGET_POLICY[key.kind], "budget": str(key),
                    "source": "fallback" if budgets.pushed(key) is None else "pushed",
                }))
        return out

    def _snapshots(self, options: CallbackOptions) -> Sequence[Observation]:
        sums = _Sums()
        for source, core in self._live():
            counts = source.snapshots(core)
            if counts is not None:
                agent = {"app_id": core.app_id, "namespace": core.namespace}
                sums.add(agent, counts[0], result="applied")
                sums.add(agent, counts[1], result="nacked")
        return sums.observations()

    def _revision(self, options: CallbackOptions) -> Sequence[Observation]:
        sums = _Sums()
        for source, core in self._live():
            counts = source.snapshots(core)
            if counts is not None and counts[3]:
                sums.set({"app_id": core.app_id, "namespace": core.namespace,
                          "digest": counts[3], "source": core.policy_source.value}, counts[2])
        return sums.observations()


_lock = threading.Lock()
_global_instruments: _Instruments | None = None
_instruments_by_provider: weakref.WeakKeyDictionary[Any, _Instruments] = (
    weakref.WeakKeyDictionary())


def _instruments(meter_provider: Any) -> _Instruments:
    global _global_instruments
    with _lock:
        if meter_provider is None:
            if _global_instruments is None:
                # The global provider: a proxy until the application sets its SDK's.
                _global_instruments = _Instruments(metrics.get_meter(METER_NAME, VERSION))
            return _global_instruments
        instruments = _instruments_by_provider.get(meter_provider)
        if instruments is None:
            instruments = _instruments_by_provider[meter_provider] = _Instruments(
                meter_provider.get_meter(METER_NAME, VERSION))
        return instruments


def register(core: _Core, meter_provider: Any = None) -> AgentMetrics:
    """Export ``core``'s metrics through ``meter_provider`` (None: the global one)."""
    source = AgentMetrics(core)
    _instruments(meter_provider).agents.add(source)
    hooks = core._hooks
    hooks.state_change = (source.on_state_change, *hooks.state_change)
    return source


# -- traces ---------------------------------------------------------------------------------


def _call_attributes(plan: CallPlan) -> dict[str, Any]:
    attributes: dict[str, Any] = {"fusebox.target": plan.target}
    if plan.retry is not None:
        attributes["fusebox.policy.retry"] = plan.retry.name
    if plan.breaker is not None:
        attributes["fusebox.policy.circuit_breaker"] = plan.breaker.policy.name
        attributes["fusebox.breaker"] = plan.breaker.name
    if plan.fallback is not None:
        attributes["fusebox.policy.fallback"] = plan.fallback.name
    if plan.timeout > 0:
        attributes["fusebox.timeout"] = plan.timeout
    return attributes


def _never_raises(method: Callable[..., None]) -> Callable[..., None]:
    """Observers never break the call they observe: a failure here is logged, once per kind."""

    @functools.wraps(method)
    def guarded(*args: Any) -> None:
        try:
            method(*args)
        except Exception:
            if method.__name__ not in _failed:
                _failed.add(method.__name__)
                logger.exception("fusebox telemetry: recording %s failed", method.__name__)

    return guarded


_failed: set[str] = set()


class _CallTracing:
    """``_executor.CallTracing``: attempts and fallbacks as events on the caller's span."""

    def recording_span(self) -> Any:
        span = trace.get_current_span()
        return span if span.is_recording() else None

    @_never_raises
    def attempt(self, retrying: RetryContext, number: int, success: bool,
                delay: float | None) -> None:
        plan = retrying.plan
        attributes = _call_attributes(plan)
        if number > 1:
            attributes["http.request.resend_count"] = number - 1
        rejected = False
        if success:
            attributes["fusebox.attempt.outcome"] = "success"
        else:
            error, outcome = retrying.error, retrying.outcome
            rejected = retrying.permanent and isinstance(error, BreakerOpenError)
            attributes["fusebox.attempt.outcome"] = (
                "rejected" if rejected else
                "timeout" if isinstance(error, PolicyTimeoutError) else "failure")
            if outcome.http_status is not None:
                attributes["http.response.status_code"] = outcome.http_status
            if outcome.grpc_code is not None:
                attributes["rpc.grpc.status_code"] = outcome.grpc_code
            if error is not None:
                attributes["error.type"] = type(error).__qualname__
            elif outcome.http_status is not None or outcome.grpc_code is not None:
                attributes["error.type"] = str(
                    outcome.http_status if outcome.http_status is not None else outcome.grpc_code)
            if delay is not None:
                attributes["fusebox.retry.delay"] = delay
        if plan.breaker is not None:
            attributes["fusebox.breaker.decision"] = "rejected" if rejected else "admitted"
            attributes["fusebox.breaker.state"] = plan.breaker.state.value
        retrying.span.add_event("fusebox.attempt", attributes)

    @_never_raises
    def fallback(self, retrying: RetryContext) -> None:
        plan = retrying.plan
        attributes = _call_attributes(plan)
        attributes["fusebox.fallback.kind"] = (
            "function" if plan.fallback_fn is not None else "response")
        retrying.span.add_event("fusebox.fallback", attributes)

    @_never_raises
    def rejected_flat(self, plan: CallPlan) -> None:
        span = self.recording_span()
        if span is None:
            return
        attributes = _call_attributes(plan)
        attributes["fusebox.attempt.outcome"] = "rejected"
        attributes["fusebox.breaker.decision"] = "rejected"
        attributes["fusebox.breaker.state"] = plan.breaker.state.value  # type: ignore[union-attr]
        span.add_event("fusebox.attempt", attributes)


_executor.tracing = _CallTracing()
