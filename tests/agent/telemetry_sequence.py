"""A scripted sequence of guarded calls whose telemetry the tests know exactly.

Shared by ``test_telemetry.py`` (with OpenTelemetry's SDK) and the subprocess that
runs it with ``opentelemetry`` blocked, so both see the same calls.

Targets (one agent, app ``checkout``):

* ``order-processor:orders`` (spec ``resiliency``): timeout ``fast`` 50 ms,
  retry ``once`` (constant 0 s, one retry), breaker ``twoFailures``
  (``consecutiveFailures >= 2``, open 30 s on a manual clock: it stays open);
* component ``orders-store`` of type ``state`` (spec ``storage``): fallback
  ``cachedOrders`` (a static response).

Steps, each one call (in its own span when the tests trace):

======  ===========================  =======================================
step    attempts                     result
======  ===========================  =======================================
ok-1    ok                           success
ok-2    ok                           success
retry   fail, ok                     success after a retry
timeout hang (timed out), ok         success after a retry
trip    fail, fail (breaker opens)   ConnectionError
reject  rejected                     BreakerOpenError
reject  rejected                     BreakerOpenError
fall    fail                         the fallback's response
======  ===========================  =======================================
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError, FallbackResponse
from fusebox.agent.policy import (
    BackoffKind,
    CircuitBreakerPolicy,
    Direction,
    FallbackPolicy,
    ResolvedPolicies,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
    TimeoutPolicy,
)
from fusebox.agent.testing import ManualClock

FALLBACK = FallbackResponse(200, body=b"[]")

STEPS: list[tuple[str, str, tuple[str, ...]]] = [
    # (step, target, what each attempt does)
    ("ok-1", "orders", ("ok",)),
    ("ok-2", "orders", ("ok",)),
    ("retry", "orders", ("fail", "ok")),
    ("timeout", "orders", ("hang", "ok")),
    ("trip", "orders", ("fail", "fail")),
    ("reject-1", "orders", ()),
    ("reject-2", "orders", ()),
    ("fall", "store", ("fail",)),
]

#: What each step returns or raises.
RESULTS = ["ok", "ok", "ok", "ok", ConnectionError, BreakerOpenError, BreakerOpenError, FALLBACK]


def policies() -> ResolvedPolicies:
    orders = TargetPolicy(
        TargetKind.APP, "order-processor", spec_namespace="default", spec_name="resiliency",
        timeout=TimeoutPolicy("fast", 0.05),
        retry=RetryPolicy("once", backoff=BackoffKind.CONSTANT, duration=0.0, max_retries=1),
        circuit_breaker=CircuitBreakerPolicy("twoFailures", max_requests=1, timeout=30.0,
                                             trip="consecutiveFailures >= 2"),
    )
    store = TargetPolicy(
        TargetKind.COMPONENT, "orders-store", direction=Direction.OUTBOUND,
        spec_namespace="default", spec_name="storage",
        fallback=FallbackPolicy("cachedOrders", response=FALLBACK),
    )
    return ResolvedPolicies(namespace="default", app_id="checkout", targets=(orders, store))


def make_agent(mode: str, **kwargs: Any) -> Agent | AsyncAgent:
    cls = Agent if mode == "sync" else AsyncAgent
    return cls(app_id="checkout", policies=policies(), clock=ManualClock(), **kwargs)


class Upstream:
    """Plays the attempts of the steps in order; ``release`` frees a hung sync attempt."""

    def __init__(self) -> None:
        self.attempts: list[str] = [a for _, _, attempts in STEPS for a in attempts]
        self.release = threading.Event()

    def _next(self) -> str:
        action = self.attempts.pop(0)
        if action == "fail":
            raise ConnectionError("connection refused")
        return action

    def sync(self) -> str:
        if self._next() == "hang":
            self.release.wait(5)  # abandoned at the timeout; released at the end
            return "late"
        return "ok"

    async def coro(self) -> str:
        if self._next() == "hang":
            await asyncio.sleep(5)  # cancelled at the timeout
        return "ok"


def run(fb: Agent | AsyncAgent, mode: str,
        span: Callable[[str], contextlib.AbstractContextManager[Any]] | None = None
        ) -> list[Any]:
    """Play every step; what each returned, or the type of what it raised."""
    upstream = Upstream()
    handles = {"orders": fb.app("order-processor", method="orders"),
               "store": fb.component("orders-store", component_type="state")}
    results: list[Any] = []
    try:
        for step, target, _ in STEPS:
            handle = handles[target]
            with span(step) if span is not None else contextlib.nullcontext():
                try:
                    if mode == "sync":
                        results.append(handle._call(upstream.sync))
                    else:
                        results.append(asyncio.run(handle._acall(upstream.coro)))
                except Exception as error:
                    results.append(type(error))
    finally:
        upstream.release.set()
    assert not upstream.attempts, f"attempts not made: {upstream.attempts}"
    return results
