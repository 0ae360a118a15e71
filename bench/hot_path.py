"""The success path of a guarded call: the agent against pybreaker and tenacity,
and the agent without and with the otel extra (``telemetry_section``).

Every contender guards the same trivial callable (returns an int), with
equivalent policies:

* breaker only: the agent's gobreaker breaker (``consecutiveFailures >= 5``)
  vs ``pybreaker.CircuitBreaker(fail_max=5)`` in memory;
* retry + breaker: the agent with a constant retry (``maxRetries: 2``, so at
  most 3 attempts) and the same breaker vs tenacity's
  ``@retry(stop=stop_after_attempt(3))``, which has no breaker at all;
* fleet budgets (issue 17): the same retry and breaker plus a rate limit (never
  reached: the bucket is deep and fast) and a retry budget, vs the agent's
  breaker-only call.

pybreaker's own ``call_async`` needs tornado; on asyncio the way to guard an
awaited call with it is ``with breaker.calling(): await fn()``, which counts
exceptions raised inside the block (the benchmark checks that once before
timing it), so that is the async contender.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker
import tenacity

from bench.timing import Budget, Measurement, Variant, async_loop, measure, sync_loop
from fusebox.agent import Agent, AsyncAgent, BreakerState
from fusebox.agent.policy import (
    BackoffKind,
    CircuitBreakerPolicy,
    RateLimitPolicy,
    ResolvedPolicies,
    RetryBudgetPolicy,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
)

#: Ratios the sync agent must reach (issue 12, "Speed"): closed breaker vs pybreaker,
#: retry + breaker vs tenacity.
CLOSED_BREAKER_TARGET = 0.6
RETRY_BREAKER_TARGET = 0.12
#: Issue 17: a call with a rate limit and a retry budget (and the retry they go with)
#: may cost at most this many times a breaker-only call.
BUDGETED_TARGET = 2.0

APP_ID = "checkout"
BREAKER_APP, BREAKER_METHOD = "order-processor", "orders"  # breaker only
RETRY_APP, RETRY_METHOD = "inventory", "stock"  # retry + breaker
BUDGET_APP, BUDGET_METHOD = "payments", "charge"  # rate limit + retry budget + retry + breaker

BREAKER = CircuitBreakerPolicy("simpleCB", max_requests=1, timeout=30.0,
                               trip="consecutiveFailures >= 5")
RETRY = RetryPolicy("threeAttempts", backoff=BackoffKind.CONSTANT, duration=1.0, max_retries=2)
# A limit the benchmark never reaches (a refused call would be measured as a fast failure).
RATE_LIMIT = RateLimitPolicy("paymentsLimit", limit=1_000_000_000, period=1.0)
RETRY_BUDGET = RetryBudgetPolicy("paymentsRetries", ratio=0.2, window=10.0,
                                 min_retries_per_second=10.0)


def static_policies() -> ResolvedPolicies:
    """The policies ``link_traffic.SPEC_YAML`` gives ``checkout`` through the server, and
    the budgeted target (the link section measures the other two only)."""

    def target(name: str, **policies: Any) -> TargetPolicy:
        return TargetPolicy(TargetKind.APP, name, spec_namespace="default",
                            spec_name="bench", **policies)

    return ResolvedPolicies(namespace="default", app_id=APP_ID, targets=(
        target(BREAKER_APP, circuit_breaker=BREAKER),
        target(RETRY_APP, retry=RETRY, circuit_breaker=BREAKER),
        target(BUDGET_APP, retry=RETRY, circuit_breaker=BREAKER, rate_limit=RATE_LIMIT,
               retry_budget=RETRY_BUDGET),
    ))


def work() -> int:
    """The guarded operation: as cheap as possible, so the guard's cost dominates."""
    return 200


async def async_work() -> int:
    return 200


@dataclass(frozen=True, slots=True)
class Comparison:
    """``subject`` costs ``ratio`` times ``baseline``; ``limit`` is the target (None: info)."""

    title: str
    subject: str
    baseline: str
    ratio_best: float
    ratio_median: float
    limit: float | None
    inclusive: bool = False  # target is ratio <= limit rather than ratio < limit

    @property
    def passed(self) -> bool | None:
        if self.limit is None:
            return None
        return self.ratio_best <= self.limit if self.inclusive else self.ratio_best < self.limit

    @property
    def target_text(self) -> str:
        if self.limit is None:
            return "info"
        return f"{'<=' if self.inclusive else '<'} {self.limit:g}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title, "subject": self.subject, "baseline": self.baseline,
            "ratio_best": round(self.ratio_best, 3), "ratio_median": round(self.ratio_median, 3),
            "target": self.target_text, "passed": self.passed,
        }


def compare(results: list[Measurement], title: str, subject: str, baseline: str,
            limit: float | None, *, inclusive: bool = False) -> Comparison:
    by_name = {m.name: m for m in results}
    s, b = by_name[subject], by_name[baseline]
    return Comparison(title, subject, baseline, s.best_ns / b.best_ns,
                      s.median_ns / b.median_ns, limit, inclusive)


def sync_section(budget: Budget) -> tuple[list[Measurement], list[Comparison]]:
    """Sync: bare call, agent (handle and decorator), pybreaker, tenacity."""
    fb = Agent(app_id=APP_ID, policies=static_policies())
    try:
        breaker_target = fb.app(BREAKER_APP, method=BREAKER_METHOD)
        retry_target = fb.app(RETRY_APP, method=RETRY_METHOD)
        budget_target = fb.app(BUDGET_APP, method=BUDGET_METHOD)
        namespace: dict[str, Any] = {
            "fn": work,
            "budget_target": budget_target,
            "target": breaker_target,
            "protected": fb.protect(app=BREAKER_APP, method=BREAKER_METHOD)(work),
            "cb": pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30),
            "retry_target": retry_target,
            "retry_protected": fb.protect(app=RETRY_APP, method=RETRY_METHOD)(work),
            "retried": tenacity.retry(stop=tenacity.stop_after_attempt(3))(work),
        }
        variants = [
            Variant("bare", "bare call: fn()", sync_loop("fn()", namespace)),
            Variant("agent_call", "agent breaker: target.call(fn)",
                    sync_loop("target.call(fn)", namespace)),
            Variant("agent_protect", "agent breaker: @fb.protect",
                    sync_loop("protected()", namespace)),
            Variant("pybreaker_call", "pybreaker: cb.call(fn)",
                    sync_loop("cb.call(fn)", namespace)),
            Variant("agent_retry_call", "agent retry+breaker: target.call(fn)",
                    sync_loop("retry_target.call(fn)", namespace)),
            Variant("agent_retry_protect", "agent retry+breaker: @fb.protect",
                    sync_loop("retry_protected()", namespace)),
            Variant("tenacity", "tenacity: @retry(stop_after_attempt(3))",
                    sync_loop("retried()", namespace)),
            Variant("agent_budget_call", "agent budgets+retry+breaker: target.call(fn)",
                    sync_loop("budget_target.call(fn)", namespace)),
        ]
        results = measure(variants, budget)
        _check_guarded(fb, [breaker_target.name, retry_target.name, budget_target.name])
    finally:
        fb.close()
    comparisons = [
        # Issue 12: the hot path gets faster with the fleet view beside the local machine.
        compare(results, "sync agent .call vs pybreaker .call", "agent_call", "pybreaker_call",
                CLOSED_BREAKER_TARGET, inclusive=True),
        compare(results, "sync agent @protect vs pybreaker .call", "agent_protect",
                "pybreaker_call", 1),
        compare(results, "sync agent retry+breaker .call vs tenacity", "agent_retry_call",
                "tenacity", RETRY_BREAKER_TARGET, inclusive=True),
        compare(results, "sync agent retry+breaker @protect vs tenacity", "agent_retry_protect",
                "tenacity", 0.2, inclusive=True),
        # Issue 17: rate limit + retry budget (+ their retry) vs the breaker-only call.
        compare(results, "sync agent budgets .call vs breaker-only .call", "agent_budget_call",
                "agent_call", BUDGETED_TARGET, inclusive=True),
    ]
    return results, comparisons


async def _pybreaker_guarded(cb: pybreaker.CircuitBreaker,
                             fn: Callable[[], Any]) -> Callable[[], Any]:
    """pybreaker around an awaited call; proven to count failures before it is timed."""

    async def guarded() -> Any:
        with cb.calling():
            return await fn()

    async def failing() -> None:
        raise RuntimeError("probe")

    probe = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=30)
    try:
        with probe.calling():
            await failing()
    except (RuntimeError, pybreaker.CircuitBreakerError):
        pass  # reaching fail_max raises CircuitBreakerError instead of the failure itself
    if probe.current_state != pybreaker.STATE_OPEN:
        raise RuntimeError("pybreaker calling() did not count an awaited failure")
    return guarded


def async_section(budget: Budget, sync_results: list[Measurement]
                  ) -> tuple[list[Measurement], list[Comparison]]:
    """Asyncio: bare await, AsyncAgent (handle and decorator), pybreaker calling(), tenacity."""
    loop = asyncio.new_event_loop()
    fb = AsyncAgent(app_id=APP_ID, policies=static_policies())
    try:
        loop.run_until_complete(fb.start())
        breaker_target = fb.app(BREAKER_APP, method=BREAKER_METHOD)
        retry_target = fb.app(RETRY_APP, method=RETRY_METHOD)
        budget_target = fb.app(BUDGET_APP, method=BUDGET_METHOD)
        cb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=30)
        namespace: dict[str, Any] = {
            "fn": async_work,
            "budget_target": budget_target,
            "target": breaker_target,
            "protected": fb.protect(app=BREAKER_APP, method=BREAKER_METHOD)(async_work),
            "pb_guarded": loop.run_until_complete(_pybreaker_guarded(cb, async_work)),
            "retry_target": retry_target,
            "retry_protected": fb.protect(app=RETRY_APP, method=RETRY_METHOD)(async_work),
            "retried": tenacity.retry(stop=tenacity.stop_after_attempt(3))(async_work),
        }
        variants = [
            Variant("async_bare", "bare await: await fn()", async_loop("fn()", namespace, loop)),
            Variant("async_agent_call", "agent breaker: await target.call(fn)",
                    async_loop("target.call(fn)", namespace, loop)),
            Variant("async_agent_protect", "agent breaker: @fb.protect",
                    async_loop("protected()", namespace, loop)),
            Variant("async_pybreaker", "pybreaker: with cb.calling(): await fn()",
                    async_loop("pb_guarded()", namespace, loop)),
            Variant("async_agent_retry_call", "agent retry+breaker: await target.call(fn)",
                    async_loop("retry_target.call(fn)", namespace, loop)),
            Variant("async_agent_retry_protect", "agent retry+breaker: @fb.protect",
                    async_loop("retry_protected()", namespace, loop)),
            Variant("async_tenacity", "tenacity: @retry(stop_after_attempt(3)) async",
                    async_loop("retried()", namespace, loop)),
            Variant("async_agent_budget_call", "agent budgets+retry+breaker: await .call(fn)",
                    async_loop("budget_target.call(fn)", namespace, loop)),
        ]
        results = measure(variants, budget)
        _check_guarded(fb, [breaker_target.name, retry_target.name, budget_target.name])
    finally:
        loop.run_until_complete(fb.aclose())
        loop.close()
    both = results + sync_results
    comparisons = [
        compare(results, "async agent .call vs pybreaker calling()", "async_agent_call",
                "async_pybreaker", 1),
        compare(results, "async agent @protect vs pybreaker calling()", "async_agent_protect",
                "async_pybreaker", 1),
        compare(both, "async agent .call vs sync pybreaker .call", "async_agent_call",
                "pybreaker_call", None),
        compare(results, "async agent retry+breaker .call vs tenacity", "async_agent_retry_call",
                "async_tenacity", 0.2, inclusive=True),
        compare(results, "async agent retry+breaker @protect vs tenacity",
                "async_agent_retry_protect", "async_tenacity", 0.2, inclusive=True),
        compare(results, "async agent budgets .call vs breaker-only .call",
                "async_agent_budget_call", "async_agent_call", BUDGETED_TARGET, inclusive=True),
    ]
    return results, comparisons


def _check_guarded(fb: Agent | AsyncAgent, targets: list[str]) -> None:
    """Refuse to report numbers for calls that went unguarded or failed.

    Each target must have a live closed breaker and only successful calls: an
    agent that passed calls through (no policies) would look fast for nothing.
    """
    states, stats = fb.breaker_states(), fb.stats()
    for name in targets:
        state, counters = states.get(name), stats.get(name)
        if state is not BreakerState.CLOSED or counters is None or (
            counters.successes == 0 or counters.failures or counters.retries
        ):
            raise RuntimeError(f"benchmark invalid: target {name!r} has breaker {state} and "
                               f"counters {counters}; expected guarded successful calls")


# -- with the otel extra (issue 15, "Speed") ---------------------------------------------

#: The hot path with the OpenTelemetry API and no SDK (a no-op meter) may cost at most this
#: many times the hot path without the extra.
NOOP_METER_TARGET = 1.10

TELEMETRY_VARIANTS = (
    ("none", "no otel extra"),
    ("noop", "otel API, no-op meter"),
    ("sdk", "otel SDK meter"),
)


@dataclass
class TelemetrySection:
    """The hot path without and with the otel extra; ``skipped`` says why it did not run."""

    sync: list[Measurement]
    asyncio: list[Measurement]
    comparisons: list[Comparison]
    skipped: str = ""
    sdk_checked: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"sync": [m.as_dict() for m in self.sync],
                "async": [m.as_dict() for m in self.asyncio],
                "comparisons": [c.as_dict() for c in self.comparisons],
                "skipped": self.skipped, "sdk_checked": self.sdk_checked}


def _telemetry_agents(kind: type[Agent] | type[AsyncAgent]) -> tuple[dict[str, Any], Any]:
    """One agent per variant (same policies); and the SDK reader (None: no SDK installed).

    ``none`` is made as without the extra: the agent's look for
    ``fusebox.agent.telemetry`` is answered "not installed", so it registers no
    instrument and no hook, exactly as in a process without opentelemetry-api. (The
    first-attempt success path measured here never reads anything else of it.)
    ``noop`` registers with the global meter provider, the API's proxy: no SDK is set
    in this process. ``sdk`` registers with an SDK ``MeterProvider`` and an in-memory
    reader, collected once after timing to prove it saw the calls.
    """
    from fusebox.agent import events

    saved = events._telemetry_module, events._telemetry_looked_for
    events._telemetry_module, events._telemetry_looked_for = None, True
    try:
        agents: dict[str, Any] = {"none": kind(app_id=APP_ID, policies=static_policies())}
    finally:
        events._telemetry_module, events._telemetry_looked_for = saved
    agents["noop"] = kind(app_id=APP_ID, policies=static_policies())
    reader = None
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    except ImportError:
        return agents, None
    reader = InMemoryMetricReader()
    agents["sdk"] = kind(app_id=APP_ID, policies=static_policies(),
                         meter_provider=MeterProvider(metric_readers=[reader]))
    return agents, reader


def _sdk_saw(reader: Any, fb: Agent | AsyncAgent) -> str:
    """What the SDK reader collected of ``fb``'s calls, checked against ``fb.stats()``."""
    data = reader.get_metrics_data()
    calls = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "fusebox.resiliency.calls":
                    for p in metric.data.data_points:
                        if p.attributes.get("outcome") == "success":
                            calls[p.attributes["target"]] = p.value
    stats = fb.stats()
    expected = {f"app_{name.split(':')[0]}": s.successes for name, s in stats.items()}
    if calls != expected:
        raise RuntimeError(f"benchmark invalid: the SDK collected {calls}, the agent counted "
                           f"{expected}")
    return ", ".join(f"{k} {v:,}" for k, v in sorted(calls.items()))


def telemetry_section(budget: Budget) -> TelemetrySection:
    """The sync and async hot paths (breaker; retry + breaker) in the three variants."""
    try:
        import opentelemetry.metrics  # noqa: F401
    except ImportError:
        return TelemetrySection([], [], [], skipped="opentelemetry-api is not installed "
                                "(pip install 'fusebox-resilience[otel]')")
    sync_agents, sync_reader = _telemetry_agents(Agent)
    variants: list[Variant] = []
    for name, label in TELEMETRY_VARIANTS:
        if name not in sync_agents:
            continue
        fb = sync_agents[name]
        namespace = {"fn": work, "target": fb.app(BREAKER_APP, method=BREAKER_METHOD),
                     "retry_target": fb.app(RETRY_APP, method=RETRY_METHOD)}
        variants += [
            Variant(f"otel_{name}_call", f"breaker .call, {label}",
                    sync_loop("target.call(fn)", namespace)),
            Variant(f"otel_{name}_retry", f"retry+breaker .call, {label}",
                    sync_loop("retry_target.call(fn)", namespace)),
        ]
    loop = asyncio.new_event_loop()
    async_agents, async_reader = _telemetry_agents(AsyncAgent)
    async_variants: list[Variant] = []
    for name, label in TELEMETRY_VARIANTS:
        if name not in async_agents:
            continue
        afb = async_agents[name]
        namespace = {"fn": async_work, "target": afb.app(BREAKER_APP, method=BREAKER_METHOD),
                     "retry_target": afb.app(RETRY_APP, method=RETRY_METHOD)}
        async_variants += [
            Variant(f"async_otel_{name}_call", f"breaker .call, {label}",
                    async_loop("target.call(fn)", namespace, loop)),
            Variant(f"async_otel_{name}_retry", f"retry+breaker .call, {label}",
                    async_loop("retry_target.call(fn)", namespace, loop)),
        ]
    try:
        sync_results = measure(variants, budget)
        async_results = measure(async_variants, budget)
        for agents in (sync_agents, async_agents):
            for fb in agents.values():
                _check_guarded(fb, [f"{BREAKER_APP}:{BREAKER_METHOD}",
                                    f"{RETRY_APP}:{RETRY_METHOD}"])
        checked = []
        for reader, agents in ((sync_reader, sync_agents), (async_reader, async_agents)):
            if reader is not None:
                checked.append(_sdk_saw(reader, agents["sdk"]))
    finally:
        for fb in sync_agents.values():
            fb.close()
        for afb in async_agents.values():
            loop.run_until_complete(afb.aclose())
        loop.close()
    comparisons = []
    for flavour, results, prefix in (("sync", sync_results, "otel_"),
                                     ("async", async_results, "async_otel_")):
        for path, suffix in (("breaker", "call"), ("retry+breaker", "retry")):
            comparisons.append(compare(
                results, f"{flavour} {path}: no-op meter vs no extra", f"{prefix}noop_{suffix}",
                f"{prefix}none_{suffix}", NOOP_METER_TARGET, inclusive=True))
            if any(m.name == f"{prefix}sdk_{suffix}" for m in results):
                comparisons.append(compare(
                    results, f"{flavour} {path}: SDK meter vs no extra",
                    f"{prefix}sdk_{suffix}", f"{prefix}none_{suffix}", None))
    sdk_checked = ("" if not checked else
                   "the SDK reader collected the calls the agents counted:\n    sync "
                   + "\n    async ".join(checked))
    return TelemetrySection(sync_results, async_results, comparisons, sdk_checked=sdk_checked)
