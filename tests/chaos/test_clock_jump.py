"""Wall-clock jumps on an agent do not move its breakers or its retry delays.

The agent runs on its real ``SystemClock``; the test replaces the ``time``
module's functions in-process: ``time.time`` jumps by hours (as NTP or a VM
resume would), ``time.monotonic`` is a hand-driven counter, and ``time.sleep``
records the delay and advances that counter. The breaker's open timeout and
the retry schedule must follow the monotonic counter only. A static check
backs it up: no module of the agent reads the wall clock except where a wall
clock is the input (an HTTP-date ``Retry-After``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fusebox.agent as agent_package
from fusebox.agent import Agent, BreakerOpenError, BreakerState
from fusebox.agent.policy import (
    BackoffKind,
    CircuitBreakerPolicy,
    ResolvedPolicies,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
)

HOUR = 3600.0
OPEN_TIMEOUT = 30.0
RETRY_DELAY = 0.5
WALL_CLOCK_READS = {("time", "time"), ("time", "time_ns"), ("datetime", "now"),
                    ("datetime", "utcnow"), ("datetime", "today"), ("date", "today")}
# A Retry-After HTTP date is wall-clock time by definition: it is turned into a
# relative delay once, then the schedule runs on the monotonic clock.
# Wall time only where a date is the point: an HTTP date in Retry-After, and the
# written-at stamp of the policy cache (shown in a log line, never compared).
ALLOWED = {("classify.py", "parse_retry_after"), ("_link.py", "save")}


class Clocks:
    """The fake ``time`` functions: a monotonic counter and a wall clock that jumps."""

    def __init__(self) -> None:
        self.mono = 5000.0
        self.wall = 1_800_000_000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds


class Upstream:
    """Fails while ``failing``; every call first jumps the wall clock by ``jump``."""

    def __init__(self, clocks: Clocks) -> None:
        self.clocks = clocks
        self.failing = True
        self.calls = 0
        self.jump = 0.0

    def __call__(self) -> str:
        self.calls += 1
        self.clocks.wall += self.jump
        if self.failing:
            raise ConnectionError("upstream down")
        return "ok"


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> Clocks:
    c = Clocks()
    monkeypatch.setattr("time.monotonic", c.monotonic)
    monkeypatch.setattr("time.time", c.time)
    monkeypatch.setattr("time.sleep", c.sleep)
    return c


def guarded_agent() -> Agent:
    """A local agent (no server) on the real system clock."""
    target = TargetPolicy(
        TargetKind.APP, "upstream", spec_namespace="default", spec_name="clock",
        retry=RetryPolicy("twice", backoff=BackoffKind.CONSTANT, duration=RETRY_DELAY,
                          max_retries=2),
        circuit_breaker=CircuitBreakerPolicy("cb", max_requests=1, timeout=OPEN_TIMEOUT,
                                             trip="consecutiveFailures >= 3"),
    )
    return Agent(app_id="checkout",
                 policies=ResolvedPolicies(namespace="default", app_id="checkout",
                                           targets=(target,)))


@pytest.mark.parametrize("jump", [+6 * HOUR, -6 * HOUR])
def test_breaker_timeout_and_retry_delays_follow_the_monotonic_clock(
    clocks: Clocks, jump: float
) -> None:
    upstream = Upstream(clocks)
    upstream.jump = jump  # the wall clock jumps during every attempt
    with guarded_agent() as fb:
        target = fb.app("upstream")
        with pytest.raises(ConnectionError):
            target.call(upstream)
        # 3 attempts, retry delays exactly as the policy says despite the jumps.
        assert upstream.calls == 3
        assert clocks.sleeps == [RETRY_DELAY, RETRY_DELAY]
        assert fb.breaker_states()["upstream"] == BreakerState.OPEN

        # The wall clock jumps again, far beyond the open timeout (or far behind it).
        clocks.wall += 10 * jump
        with pytest.raises(BreakerOpenError):
            target.call(upstream)
        clocks.mono += OPEN_TIMEOUT - 0.01
        with pytest.raises(BreakerOpenError):
            target.call(upstream)
        assert upstream.calls == 3  # rejected locally: the upstream never saw them

        # Monotonic time reaches the timeout: half-open, the probe succeeds, closed.
        clocks.mono += 0.02
        upstream.failing = False
        assert target.call(upstream) == "ok"
        assert fb.breaker_states()["upstream"] == BreakerState.CLOSED
        assert clocks.sleeps == [RETRY_DELAY, RETRY_DELAY]


def test_no_wall_clock_reads_in_the_agent() -> None:
    package = Path(agent_package.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for function, node in _attribute_reads(tree):
            if (node.value.id, node.attr) in WALL_CLOCK_READS and (
                    (path.name, function) not in ALLOWED):
                found.append(f"{path.relative_to(package)}:{node.lineno} in {function}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "time":
                names = {alias.name for alias in node.names}
                assert not names & {"time", "time_ns"}, f"{path}: from time import {names}"
    assert found == [], "wall-clock reads on the agent's paths"


def _attribute_reads(tree: ast.Module) -> list[tuple[str, ast.Attribute]]:
    """Every ``name.attr`` in the module with the function it sits in ("" at module level)."""
    reads: list[tuple[str, ast.Attribute]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name):
                reads.append((inner, child))
            visit(child, inner)

    visit(tree, "")
    return reads
