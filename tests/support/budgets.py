"""What the fleet budget tests and benchmarks share (issue 17, docs/budgets.md).

* ``budget_spec``: a Resiliency spec for app ``checkout`` calling app ``upstream``
  with a rate limit and/or a retry policy behind a retry budget;
* ``rate_limit_bound`` / ``retry_bound``: the guarantees of docs/budgets.md §5,
  computed from a run's own figures (the asserts use them, never a timing
  threshold);
* ``BudgetAgents``: one ``tests.e2e.budget_agent`` process (several instances),
  and ``Fleet``: several of them started, driven and read as one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.support.processes import child_env
from tests.support.specs import REPOSITORY

__all__ = [
    "BudgetAgents",
    "Fleet",
    "budget_spec",
    "max_in_window",
    "rate_limit_bound",
    "retry_bound",
]

#: Slots of a retry budget's window (docs/budgets.md §2, ``S``).
RETRY_BUDGET_SLOTS = 10


def budget_spec(name: str, *, limit: int | None = None, burst: int | None = None,
                period: str = "1s", max_retries: int | None = None,
                retry_interval: str = "10ms", ratio: float | None = None,
                window: str = "10s", min_retries_per_second: float = 10.0) -> str:
    """App ``checkout`` → app ``upstream``: a rate limit (``limit``, ``burst``, reject),
    a constant retry (``max_retries``), a retry budget (``ratio``...), each when given."""
    policies: list[str] = []
    target: list[str] = []
    if limit is not None:
        policies += ["    rateLimits:", "      fleetLimit:", f"        limit: {limit}",
                     f"        period: {period}"]
        if burst is not None:
            policies.append(f"        burst: {burst}")
        policies.append("        whenExceeded: reject")
        target.append("        rateLimit: fleetLimit")
    if max_retries is not None:
        policies += ["    retries:", "      brownoutRetry:", "        policy: constant",
                     f"        duration: {retry_interval}", f"        maxRetries: {max_retries}"]
        target.append("        retry: brownoutRetry")
    if ratio is not None:
        policies += ["    retryBudgets:", "      fleetRetries:", f"        ratio: {ratio}",
                     f"        window: {window}",
                     f"        minRetriesPerSecond: {min_retries_per_second}"]
        target.append("        retryBudget: fleetRetries")
    if not target:
        raise ValueError("a budget spec needs a rate limit, a retry or a retry budget")
    return "\n".join([
        "apiVersion: dapr.io/v1alpha1", "kind: Resiliency", "metadata:", f"  name: {name}",
        "scopes: [checkout]", "spec:", "  policies:", *policies, "  targets:", "    apps:",
        "      upstream:", *target, "",
    ])


def rate_limit_bound(*, burst: float, rate: float, instances: int, seconds: float,
                     cut_off: int = 0, last_fleet_size: int = 1) -> float:
    """docs/budgets.md §5: ``calls(I) ≤ B + R·t + N + K·(B/N' + 1 + R·t/N')``.

    ``cut_off`` (K): instances cut off from every replica for longer than their
    lease during the interval; ``last_fleet_size`` (N'): the fleet size they last heard.
    """
    n = max(1, last_fleet_size)
    return (burst + rate * seconds + instances
            + cut_off * (burst / n + 1 + rate * seconds / n))


def retry_bound(*, first_attempts: float, ratio: float, min_retries_per_second: float,
                seconds: float, window: float, cut_off: int = 0,
                last_fleet_size: int = 1) -> float:
    """docs/budgets.md §5, retries in an interval of length ``seconds``:

    ``ratio * F(a - window, b] + floor * (S/(S-1) * t + window)`` plus the cut-off
    instances' fallback floors, ``K * floor/N' * (S/(S-1) * t + window)``.
    ``first_attempts`` must count from one window before the interval.
    """
    slots = RETRY_BUDGET_SLOTS
    span = slots / (slots - 1) * seconds + window
    return (ratio * first_attempts + min_retries_per_second * span
            + cut_off * min_retries_per_second / max(1, last_fleet_size) * span)


def max_in_window(times: Iterable[float], length: float) -> tuple[int, float]:
    """The most of ``times`` in any closed interval ``[x, x + length]``, and that ``x``."""
    ordered = sorted(times)
    best, at, start = 0, 0.0, 0
    for end, t in enumerate(ordered):
        while ordered[start] < t - length:
            start += 1
        if end - start + 1 > best:
            best, at = end - start + 1, ordered[start]
    return best, at


class BudgetAgents:
    """One ``python -m tests.e2e.budget_agent`` process; its JSON lines in ``events``."""

    def __init__(self, workdir: Path, name: str, instances: Sequence[tuple[str, float]], *,
                 upstream: str, server: str | None = None, spec: Path | None = None,
                 timestamps: bool = True, extra: Sequence[str] = ()) -> None:
        if (server is None) == (spec is None):
            raise ValueError("give either server= (fleet) or spec= (per instance)")
        self.name = name
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.log = workdir / f"budget-agents-{name}.log"
        argv = [sys.executable, "-m", "tests.e2e.budget_agent", "--upstream", upstream,
                "--cache-dir", str(workdir / f"cache-{name}"), *extra]
        argv += ["--server", server] if server is not None else ["--spec", str(spec)]
        if timestamps:
            argv.append("--timestamps")
        for instance, rate in instances:
            argv += ["--instance", f"{instance}={rate:g}"]
        self._stderr = self.log.open("wb")
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._stderr, cwd=REPOSITORY, env=child_env())
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()

    def wait_for(self, condition: Callable[[list[dict[str, Any]]], bool], deadline: float,
                 what: str) -> None:
        end = time.monotonic() + deadline
        with self._changed:
            while not condition(self.events):
                remaining = end - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(
                        f"agents {self.name}: {what} did not happen within {deadline}s; "
                        f"last events {self.events[-3:]}\n{self.log.read_text()[-3000:]}")
                self._changed.wait(min(remaining, 0.2))

    def count(self, event: str) -> int:
        with self._changed:
            return sum(1 for e in self.events if e["event"] == event)

    def seconds(self) -> list[dict[str, Any]]:
        with self._changed:
            return [e for e in self.events if e["event"] == "second"]

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.close()
                self.process.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self._stderr.close()


class Fleet:
    """Several ``BudgetAgents`` processes driven as one fleet, for one run (one ``go``)."""

    def __init__(self, processes: Sequence[BudgetAgents]) -> None:
        self.processes = list(processes)
        self.t0: float | None = None

    def wait_ready(self, deadline: float = 60.0) -> None:
        for p in self.processes:
            p.wait_for(lambda ev: any(e["event"] == "ready" for e in ev), deadline, "ready")

    def go(self, duration: float, *, lead: float = 0.5) -> float:
        """Every instance starts calling at the same ``t0`` (``lead`` s from now): ``t0``."""
        if self.t0 is not None:
            raise RuntimeError("a Fleet runs once: its seconds are counted from one t0")
        t0 = self.t0 = time.time() + lead
        for p in self.processes:
            p.send(cmd="go", t0=t0, duration=duration)
        return t0

    def set_rate(self, instance: str, rate: float) -> None:
        for p in self.processes:
            p.send(cmd="rate", instance=instance, rate=rate)

    def wait_done(self, deadline: float) -> None:
        end = time.monotonic() + deadline
        for p in self.processes:
            p.wait_for(lambda ev: any(e["event"] == "done" for e in ev),
                       max(0.1, end - time.monotonic()), "the run's end")

    def seconds(self) -> list[dict[str, Any]]:
        return [e for p in self.processes for e in p.seconds()]

    def per_second(self, field: str, instances: Iterable[str] | None = None) -> dict[int, int]:
        """``field`` summed over the fleet's (or ``instances``') lines, by second."""
        chosen = set(instances) if instances is not None else None
        totals: defaultdict[int, int] = defaultdict(int)
        for e in self.seconds():
            if chosen is None or e["instance"] in chosen:
                totals[e["k"]] += e[field]
        return dict(sorted(totals.items()))

    def total(self, field: str) -> int:
        return sum(e[field] for e in self.seconds())

    def admission_times(self) -> list[float]:
        """Every admission of the run, in seconds from ``t0``."""
        return sorted(t for e in self.seconds() for t in e.get("admit_t", ()))

    def stop(self) -> None:
        for p in self.processes:
            p.stop()
