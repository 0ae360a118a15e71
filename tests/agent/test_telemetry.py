"""The agent's OpenTelemetry metrics and trace events (docs/observability.md).

One agent with the SDK's in-memory metric reader and span exporter plays the
scripted sequence of ``telemetry_sequence``; every instrument must then hold
exactly the expected values and attributes, and each call's span exactly the
expected events. The same sequence runs without OpenTelemetry importable (a
subprocess blocks it) and must behave the same and record nothing.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError, RateLimitedError
from fusebox.agent.budget import BudgetKind, BudgetShare, budget_key
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    RateLimitPolicy,
    RetryBudgetPolicy,
    RetryPolicy,
)
from fusebox.agent.telemetry import INSTRUMENTS
from fusebox.agent.testing import ManualClock
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.agent import telemetry_sequence
from tests.agent.harness import app_target, policies
from tests.agent.telemetry_sequence import RESULTS, make_agent
from tests.support.eventually import eventually_async
from tests.support.specs import SEED_SPEC

REPOSITORY = Path(__file__).resolve().parents[2]

ORDERS = {"app_id": "checkout", "namespace": "default", "name": "resiliency",
          "flow_direction": "outbound", "target": "app_order-processor"}
STORE = {"app_id": "checkout", "namespace": "default", "name": "storage",
         "flow_direction": "outbound", "target": "state_orders-store"}

Points = dict[str, dict[frozenset[tuple[str, Any]], int]]


def point(attributes: dict[str, str], **more: str) -> frozenset[tuple[str, Any]]:
    return frozenset({**attributes, **more}.items())


EXPECTED: Points = {
    "fusebox.resiliency.count": {
        point(ORDERS, policy="timeout"): 7,
        point(ORDERS, policy="retry"): 7,
        point(ORDERS, policy="circuitbreaker"): 7,
        point(STORE, policy="fallback"): 1,
    },
    "fusebox.resiliency.activations": {
        point(ORDERS, policy="retry"): 3,
        point(ORDERS, policy="timeout"): 1,
        point(ORDERS, policy="circuitbreaker", status="closed"): 0,
        point(ORDERS, policy="circuitbreaker", status="half-open"): 0,
        point(ORDERS, policy="circuitbreaker", status="open"): 1,
        point(STORE, policy="fallback"): 1,
    },
    "fusebox.resiliency.cb_state": {
        point(ORDERS, policy="circuitbreaker", breaker="order-processor:orders",
              status="closed"): 0,
        point(ORDERS, policy="circuitbreaker", breaker="order-processor:orders",
              status="half-open"): 0,
        point(ORDERS, policy="circuitbreaker", breaker="order-processor:orders",
              status="open"): 1,
    },
    "fusebox.resiliency.loaded": {
        point({"app_id": "checkout", "namespace": "default", "name": "resiliency"}): 1,
        point({"app_id": "checkout", "namespace": "default", "name": "storage"}): 1,
    },
    "fusebox.resiliency.calls": {
        point(ORDERS, outcome="success"): 4,
        point(ORDERS, outcome="failure"): 3,
        point(STORE, outcome="success"): 0,
        point(STORE, outcome="failure"): 1,
    },
    "fusebox.resiliency.attempts": {point(ORDERS): 10, point(STORE): 1},
    "fusebox.resiliency.rejections": {point(ORDERS): 2},
}

_ORDERS_CALL = {"fusebox.target": "order-processor:orders", "fusebox.policy.retry": "once",
                "fusebox.policy.circuit_breaker": "twoFailures",
                "fusebox.breaker": "order-processor:orders", "fusebox.timeout": 0.05}


def _attempt(resend: int, outcome: str, state: str, *, error: str | None = None,
             delay: float | None = None, decision: str = "admitted") -> dict[str, Any]:
    event: dict[str, Any] = {**_ORDERS_CALL, "fusebox.attempt.outcome": outcome,
                             "fusebox.breaker.decision": decision,
                             "fusebox.breaker.state": state}
    if resend:
        event["http.request.resend_count"] = resend
    if error is not None:
        event["error.type"] = error
    if delay is not None:
        event["fusebox.retry.delay"] = delay
    return event


#: Per step (span name): the events the agent put on that call's span.
EXPECTED_EVENTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "ok-1": [],
    "ok-2": [],
    "retry": [
        ("fusebox.attempt", _attempt(0, "failure", "closed", error="ConnectionError",
                                     delay=0.0)),
        ("fusebox.attempt", _attempt(1, "success", "closed")),
    ],
    "timeout": [
        ("fusebox.attempt", _attempt(0, "timeout", "closed", error="PolicyTimeoutError",
                                     delay=0.0)),
        ("fusebox.attempt", _attempt(1, "success", "closed")),
    ],
    "trip": [
        ("fusebox.attempt", _attempt(0, "failure", "closed", error="ConnectionError",
                                     delay=0.0)),
        ("fusebox.attempt", _attempt(1, "failure", "open", error="ConnectionError")),
    ],
    "reject-1": [("fusebox.attempt", _attempt(0, "rejected", "open", error="BreakerOpenError",
                                              decision="rejected"))],
    "reject-2": [("fusebox.attempt", _attempt(0, "rejected", "open", error="BreakerOpenError",
                                              decision="rejected"))],
    "fall": [
        ("fusebox.attempt", {"fusebox.target": "orders-store",
                             "fusebox.policy.fallback": "cachedOrders",
                             "fusebox.attempt.outcome": "failure",
                             "error.type": "ConnectionError"}),
        ("fusebox.fallback", {"fusebox.target": "orders-store",
                              "fusebox.policy.fallback": "cachedOrders",
                              "fusebox.fallback.kind": "response"}),
    ],
}


class Telemetry:
    """An SDK meter provider with an in-memory reader, a tracer provider with an exporter."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.tracer_provider.get_tracer("tests")

    def points(self) -> Points:
        out: Points = {}
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                assert scope_metrics.scope.name == "fusebox.agent"
                for metric in scope_metrics.metrics:
                    kind, unit, _ = INSTRUMENTS[metric.name]
                    assert metric.unit == unit
                    if kind == "counter":
                        assert isinstance(metric.data, Sum) and metric.data.is_monotonic
                    else:
                        assert isinstance(metric.data, Gauge)
                    out[metric.name] = {frozenset(p.attributes.items()): int(p.value)
                                        for p in metric.data.data_points}
        return out

    def shares(self) -> dict[tuple[str, str], float]:
        """The budget share gauge: (policy, source) -> value."""
        data = self.reader.get_metrics_data()
        return {(str(p.attributes["policy"]), str(p.attributes["source"])): float(p.value)
                for rm in data.resource_metrics for sm in rm.scope_metrics
                for m in sm.metrics if m.name == "fusebox.agent.budget.share"
                for p in m.data.data_points}

    def events(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        return {span.name: [(e.name, dict(e.attributes or {})) for e in span.events]
                for span in self.exporter.get_finished_spans()}


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.meter_provider.shutdown()
    telemetry.tracer_provider.shutdown()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_scripted_sequence_gives_exactly_the_expected_metrics_and_events(
    mode: str, otel: Telemetry
) -> None:
    fb = make_agent(mode, meter_provider=otel.meter_provider)
    try:
        results = telemetry_sequence.run(fb, mode, otel.tracer.start_as_current_span)
        assert results == RESULTS
        assert otel.points() == EXPECTED
        assert otel.events() == EXPECTED_EVENTS
    finally:
        _close(fb)


def test_a_breaker_is_in_the_state_gauge_from_its_creation_at_closed(otel: Telemetry) -> None:
    fb = make_agent("sync", meter_provider=otel.meter_provider)
    try:
        assert "fusebox.resiliency.cb_state" not in otel.points()  # no breaker yet
        fb.app("order-processor", method="orders").call(lambda: "ok")
        states = otel.points()["fusebox.resiliency.cb_state"]
        assert {dict(k)["status"]: v for k, v in states.items()} == {
            "closed": 1, "half-open": 0, "open": 0}
    finally:
        fb.close()


def test_two_agents_on_one_provider_add_up_and_a_collected_agent_drops_out(
    otel: Telemetry
) -> None:
    first = make_agent("sync", meter_provider=otel.meter_provider)
    second = make_agent("sync", meter_provider=otel.meter_provider)
    for agent in (first, second):
        agent.app("order-processor", method="orders").call(lambda: "ok")
    del agent
    # Two methods of one app are one Dapr target: their counters add up too.
    first.app("order-processor", method="stock").call(lambda: "ok")
    calls = otel.points()["fusebox.resiliency.calls"]
    assert calls[point(ORDERS, outcome="success")] == 3
    second.close()
    del second
    gc.collect()
    assert otel.points()["fusebox.resiliency.calls"][point(ORDERS, outcome="success")] == 2
    first.close()


def test_a_call_outside_a_recording_span_adds_no_event_and_still_counts(
    otel: Telemetry
) -> None:
    fb = make_agent("sync", meter_provider=otel.meter_provider)
    try:
        calls = iter([ConnectionError("refused"), "ok"])

        def flaky() -> str:
            outcome = next(calls)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        assert fb.app("order-processor", method="orders").call(flaky) == "ok"
        assert otel.exporter.get_finished_spans() == ()
        assert otel.points()["fusebox.resiliency.attempts"] == {point(ORDERS): 2}
    finally:
        fb.close()


def test_a_breaker_only_call_rejected_is_an_event_on_the_callers_span(otel: Telemetry) -> None:
    breaker = CircuitBreakerPolicy("oneFailure", trip="consecutiveFailures >= 1")
    fb = Agent(app_id="checkout", policies=policies(app_target(circuit_breaker=breaker)),
               meter_provider=otel.meter_provider)
    target = fb.app("order-processor", method="orders")
    try:
        with pytest.raises(ConnectionError):
            target.call(_refused)
        with otel.tracer.start_as_current_span("rejected"), pytest.raises(BreakerOpenError):
            target.call(_refused)
        assert otel.events() == {"rejected": [("fusebox.attempt", {
            "fusebox.target": "order-processor:orders",
            "fusebox.policy.circuit_breaker": "oneFailure",
            "fusebox.breaker": "order-processor:orders",
            "fusebox.attempt.outcome": "rejected", "fusebox.breaker.decision": "rejected",
            "fusebox.breaker.state": "open"})]}
        assert otel.points()["fusebox.resiliency.rejections"] == {point(ORDERS): 1}
    finally:
        fb.close()


def test_fleet_budgets_count_refusals_skipped_retries_and_show_the_share(
        otel: Telemetry) -> None:
    limit = RateLimitPolicy("ordersLimit", limit=3, period=1.0)
    budget = RetryBudgetPolicy("ordersRetries", ratio=0.1, window=10.0,
                               min_retries_per_second=0.0)
    target = app_target(rate_limit=limit, retry=RetryPolicy("twice", max_retries=2),
                        retry_budget=budget)
    fb = Agent(app_id="checkout", policies=policies(target), clock=ManualClock(),
               meter_provider=otel.meter_provider)
    try:
        handle = fb.app("order-processor", method="orders")
        with pytest.raises(ConnectionError):
            handle.call(_refused)  # 1 first attempt: ratio 0.1 allows no retry, skipped
        for _ in range(3):
            with suppress(RateLimitedError, ConnectionError):
                handle.call(_refused)  # 2 more first attempts, then the limit refuses 1
        points = otel.points()
        budgets = {**ORDERS, "name": "resiliency"}
        assert points["fusebox.resiliency.rate_limited"] == {
            point(budgets, policy="ratelimit"): 1}
        assert points["fusebox.resiliency.retries_skipped"] == {
            point(budgets, policy="retrybudget"): 3}
        assert points["fusebox.resiliency.count"][point(budgets, policy="ratelimit")] == 4
        key = budget_key(target, BudgetKind.RATE_LIMIT, "checkout")
        fb._budgets.apply_share(BudgetShare(key, 0.5, fleet_size=4, lease=60.0, generation=1))
        shares = otel.shares()
        assert shares[("ratelimit", "pushed")] == 0.5
        assert shares[("retrybudget", "fallback")] == 1.0
    finally:
        fb.close()


def _refused() -> None:
    raise ConnectionError("refused")


def _close(fb: Agent | AsyncAgent) -> None:
    if isinstance(fb, Agent):
        fb.close()
    else:
        import asyncio

        asyncio.run(fb.aclose())


# -- without the extra ----------------------------------------------------------------------

_WITHOUT_OTEL = textwrap.dedent("""\
    import dataclasses, json, sys
    sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
    from fusebox.agent import _executor
    from tests.agent import telemetry_sequence
    out = {}
    for mode in ("sync", "async"):
        fb = telemetry_sequence.make_agent(mode)
        results = telemetry_sequence.run(fb, mode)
        out[mode] = {"results": [getattr(r, "__name__", repr(r)) for r in results],
                     "stats": {k: list(dataclasses.astuple(v)) for k, v in fb.stats().items()}}
    try:
        telemetry_sequence.make_agent("sync", meter_provider=object())
    except ModuleNotFoundError as e:
        out["meter_provider"] = str(e)
    out["tracing"] = _executor.tracing is None
    out["otel_modules"] = sorted(m for m in sys.modules
                                 if m.startswith("opentelemetry") and sys.modules[m] is not None)
    out["telemetry_loaded"] = "fusebox.agent.telemetry" in sys.modules
    print(json.dumps(out))
""")


def test_without_opentelemetry_the_sequence_works_the_same_and_records_nothing() -> None:
    done = subprocess.run([sys.executable, "-c", _WITHOUT_OTEL], cwd=REPOSITORY,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected_results = [getattr(r, "__name__", repr(r)) for r in RESULTS]
    # calls, successes, failures, retries, timeouts, rejected, fallbacks, rate_limited,
    # retries_skipped
    expected_stats = {"order-processor:orders": [7, 4, 3, 3, 1, 2, 0, 0, 0],
                      "orders-store": [1, 0, 1, 0, 0, 0, 1, 0, 0]}
    for mode in ("sync", "async"):
        assert out[mode] == {"results": expected_results, "stats": expected_stats}
    assert "pip install 'fusebox-resilience[otel]'" in out["meter_provider"]
    assert out["tracing"] is True
    assert out["otel_modules"] == []
    assert out["telemetry_loaded"] is False


def test_importing_the_agent_does_not_import_opentelemetry() -> None:
    code = ("import sys, fusebox.agent, fusebox.agent.integrations, fusebox.agent.events; "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- policy snapshots: the link's counters --------------------------------------------------

_UNAPPLICABLE_SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: broken
scopes: [checkout]
spec:
  policies:
    fallbacks:
      code: {function: not_registered}
  targets:
    apps:
      inventory: {fallback: code}
"""


async def _apply(port: int, text: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=text))


async def test_snapshots_applied_and_nacked_and_the_revision_in_force_are_metrics(
    otel: Telemetry, tmp_path: Path
) -> None:
    async with FuseboxServer(ServerConfig(listen="127.0.0.1:0", store_url="memory://")) as srv:
        fb = AsyncAgent(app_id="checkout", server=f"127.0.0.1:{srv.port}",
                        cache_path=tmp_path / "cache.pb", meter_provider=otel.meter_provider)
        async with fb:
            agent = {"app_id": "checkout", "namespace": "default"}
            assert otel.points()["fusebox.agent.policy.snapshots"] == {
                point(agent, result="applied"): 1, point(agent, result="nacked"): 0}
            await _apply(srv.port, SEED_SPEC)
            await eventually_async(lambda: fb.policies is not None and bool(fb.policies.targets))
            digest = fb.policies.digest  # type: ignore[union-attr]
            [revision] = otel.points()["fusebox.agent.policy.revision"].values()
            assert revision == 1  # the store's first revision, the seed spec
            await _apply(srv.port, _UNAPPLICABLE_SPEC)
            await eventually_async(
                lambda: otel.points()["fusebox.agent.policy.snapshots"].get(
                    point(agent, result="nacked")) == 1, what="the NACK counted")
            points = otel.points()
            assert points["fusebox.agent.policy.snapshots"] == {
                point(agent, result="applied"): 2, point(agent, result="nacked"): 1}
            assert points["fusebox.agent.policy.revision"] == {
                point(agent, digest=digest, source="server"): revision}
            assert points["fusebox.resiliency.loaded"] == {
                point({"app_id": "checkout", "namespace": "default",
                       "name": "myresiliency"}): 1}
