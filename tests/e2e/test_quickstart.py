"""The Dapr resiliency quickstart (examples/quickstart/demo.py) end to end, short timings.

Each test runs the real orchestrator: a control plane, order-processor and
three checkout replicas as processes on 127.0.0.1. The orchestrator's JSON
summary gives the figures; its stdout must read like the Dapr document.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import child_env
from tests.support.redis_server import RedisServer
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

REPLICAS = 3
THRESHOLD = 5  # the seed's simpleCB: consecutiveFailures >= 5
MAX_REQUESTS = 1
SHORT = ["--retry-interval", "200ms", "--breaker-timeout", "1s", "--healthy", "1s",
         "--outage", "2s", "--recovery", "1s", "--order-interval", "100ms",
         "--replicas", str(REPLICAS)]
RUN_DEADLINE = 120.0


def run_demo(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], str]:
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, "examples/quickstart/demo.py", *SHORT, "--summary-json", str(summary),
         "--workdir", str(tmp_path / "work"), *extra],
        cwd=REPOSITORY, env=child_env(), capture_output=True, text=True, timeout=RUN_DEADLINE,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(summary.read_text()), done.stdout


def assert_trip_probe_recover(transitions: list[str]) -> None:
    """closed -> open, at least one failed probe (half-open -> open), then closed again."""
    assert transitions[0] == "closed>open", transitions
    assert "open>half-open" in transitions, transitions
    assert "half-open>open" in transitions, transitions
    assert transitions[-1] == "half-open>closed", transitions


def assert_no_order_lost(summary: dict[str, Any]) -> None:
    assert summary["orders_sent"] > 0
    assert summary["orders_lost"] == 0, summary
    assert summary["orders_received"] == summary["orders_sent"], summary


def assert_cluster_wide(summary: dict[str, Any]) -> None:
    assert_no_order_lost(summary)
    # The fleet stops after about THRESHOLD failures, not THRESHOLD per replica.
    assert THRESHOLD <= summary["failed_calls_while_closed"] <= THRESHOLD + REPLICAS, summary
    assert summary["max_concurrent_probes"] <= MAX_REQUESTS, summary
    half_opens = summary["server_transitions"].count("open>half-open")
    assert 1 <= summary["half_open_probes"] <= half_opens * MAX_REQUESTS, summary
    assert_trip_probe_recover(summary["server_transitions"])
    for replica in summary["transitions"]:
        assert_trip_probe_recover(replica)


def test_quickstart_cluster_wide_on_the_embedded_store(tmp_path: Path) -> None:
    summary, output = run_demo(tmp_path)

    assert summary["store"] == "embedded"
    assert_cluster_wide(summary)
    assert 'Order passed: {"orderId": 1}' in output
    assert 'Order received: {"orderId": 1}' in output
    assert ("Error processing operation endpoint[order-processor, order-processor:orders]. "
            "Retrying") in output
    for change in ("closed to open", "open to half-open", "half-open to open",
                   "half-open to closed"):
        assert f'Circuit breaker "order-processor:orders" changed state from {change}' in output
    assert "orders lost                        0" in output


def test_quickstart_per_instance_wastes_threshold_times_replicas(tmp_path: Path) -> None:
    summary, _ = run_demo(tmp_path, "--per-instance")

    assert summary["mode"] == "per-instance"
    assert_no_order_lost(summary)
    # Every replica must see THRESHOLD failures of its own before it stops:
    # more than the cluster-wide run's upper bound (THRESHOLD + REPLICAS).
    assert summary["failed_calls_while_closed"] >= THRESHOLD * REPLICAS, summary
    assert summary["failed_calls_while_closed"] > THRESHOLD + REPLICAS
    assert summary["server_transitions"] == []  # the control plane kept no breaker
    for replica in summary["transitions"]:
        assert_trip_probe_recover(replica)


def test_quickstart_on_redis_like_make_demo_store(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        summary, _ = run_demo(tmp_path, "--store", redis.url)
    finally:
        redis.stop()

    assert summary["store"] == redis.url
    assert_cluster_wide(summary)
