"""Local-first, fleet-wide, with real processes: a fleet breaker is never looser than Dapr's.

A real ``fusebox serve`` and real agent processes (``tests.e2e.burst_agent``)
that call back to back, with no pause: a failing callable opens the breaker
after exactly the threshold, sync and async, from the first call after the
agent starts; Dapr's retry + breaker cases give the same answers with no
control plane, connected with per-instance breakers, and connected with fleet
breakers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.support.processes import ServerProcess, child_env
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: localfirst
scopes: [checkout]
spec:
  policies:
    retries:
      quick:
        policy: constant
        duration: 1ms
        maxRetries: 5
      once:
        policy: constant
        duration: 1ms
        maxRetries: 1
    circuitBreakers:
      fiveInARow:
        maxRequests: 1
        timeout: 60s
        trip: consecutiveFailures >= 5
      threeInARow:
        maxRequests: 1
        timeout: 60s
        trip: consecutiveFailures >= 3
      moreThanFour:
        maxRequests: 1
        timeout: 60s
        trip: totalFailures > 4
  targets:
    apps:
      order-processor:
        circuitBreaker: fiveInARow
      inventory:
        retry: quick
        circuitBreaker: threeInARow
      payments:
        retry: quick
        circuitBreaker: moreThanFour
      shipping:
        retry: once
        circuitBreaker: threeInARow
"""
BACK_TO_BACK = "order-processor:F:2000"
DAPR_CASES = ("inventory:F:3", "payments:F:3", "shipping:FFSFFFFF:6")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path) as srv:
        with grpc.insecure_channel(srv.address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=SPEC), timeout=10)
        yield srv


def burst(tmp_path: Path, mode: str, *where: str, cases: tuple[str, ...]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "tests.e2e.burst_agent", "--mode", mode, *where,
            "--cache-path", str(tmp_path / f"cache-{mode}-{len(where)}.pb")]
    for case in cases:
        argv += ["--case", case]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPOSITORY, env=child_env(),
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def results(calls: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(c["result"], c["attempts"]) for c in calls]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_back_to_back_failures_open_a_connected_agent_after_exactly_the_threshold(
    server: ServerProcess, tmp_path: Path, mode: str,
) -> None:
    out = burst(tmp_path, mode, "--server", server.address, cases=(BACK_TO_BACK,))
    assert out["following"], "the agent must be following the fleet"
    case = out["cases"]["order-processor"]
    # The 5th failure crosses `consecutiveFailures >= 5`: not one call more reaches the
    # upstream, from the first call after the agent started (no round trip, no warm-up).
    assert case["reached"] == 5
    assert results(case["calls"]) == [("failed", 1)] * 5 + [("rejected", 0)] * 1995
    assert out["states"]["order-processor:orders"] == "open"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_dapr_retry_and_breaker_cases_answer_the_same_with_or_without_the_fleet(
    server: ServerProcess, tmp_path: Path, mode: str,
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    alone = burst(tmp_path, mode, "--spec", str(spec), cases=DAPR_CASES)
    per_instance = burst(tmp_path, mode, "--server", server.address, "--per-instance",
                         cases=DAPR_CASES)
    fleet = burst(tmp_path, mode, "--server", server.address, cases=DAPR_CASES)
    assert fleet["following"] and not alone["following"]
    answers = {name: results(case["calls"]) for name, case in alone["cases"].items()}
    # Dapr's numbers: the attempt that crosses the trip is the last one to run; the
    # retry after it meets the open breaker, which ends the call.
    assert answers == {
        "inventory": [("rejected", 3), ("rejected", 0), ("rejected", 0)],
        "payments": [("rejected", 5), ("rejected", 0), ("rejected", 0)],
        "shipping": [("failed", 2), ("ok", 1), ("failed", 2), ("rejected", 1),
                     ("rejected", 0), ("rejected", 0)],
    }
    for other in (per_instance, fleet):
        assert {name: results(case["calls"]) for name, case in other["cases"].items()} \
            == answers
