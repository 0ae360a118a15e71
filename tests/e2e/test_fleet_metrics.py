"""The fleet's view, end to end: a real `fusebox serve`, agent processes, a trip and a
spec change, then what /metrics says.

Three agent processes (two of app `checkout`, one of `billing`) call one
upstream through the same shared breaker. The upstream fails: the breaker
trips once (its open time outlasts the test, so that is the only transition),
every agent acks the update, and the trip's convergence is observed once.
A spec change then gives each app one new snapshot, each acknowledged by all
its agents: one policy convergence per app. Along the way the per-target
calls (rejections included) and the loaded spec are read back.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.chaos.support import FAIL, ChaosUpstream, metrics_args
from tests.support.eventually import eventually
from tests.support.processes import AgentProcess, ServerProcess

pytestmark = pytest.mark.e2e

DEADLINE = 30.0
THRESHOLD = 3


def spec(*, with_timeout: bool = False) -> str:
    timeout_policy = "    timeouts:\n      quick: 2s\n" if with_timeout else ""
    timeout_ref = "        timeout: quick\n" if with_timeout else ""
    return f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: fleet
scopes: [checkout, billing]
spec:
  policies:
{timeout_policy}    circuitBreakers:
      shared:
        maxRequests: 1
        timeout: 120s
        trip: consecutiveFailures >= {THRESHOLD}
  targets:
    apps:
      upstream:
        circuitBreaker: shared
{timeout_ref}"""


def scrape(port: int) -> dict[str, float]:
    """Every sample of the endpoint: 'name{labels}' -> value (labels as exposed)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], name: str, *fragments: str) -> float:
    """The sum of ``name``'s samples whose labels contain every fragment."""
    return sum(v for k, v in samples.items()
               if k.split("{")[0] == name and all(f in k for f in fragments))


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    with ChaosUpstream() as u:
        yield u


def test_a_trip_and_a_spec_change_are_observed_once_each_when_every_agent_acked(
    tmp_path: Path, upstream: ChaosUpstream,
) -> None:
    args, port = metrics_args()
    server = ServerProcess(tmp_path, extra_args=args)
    agents: list[AgentProcess] = []
    try:
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=spec()), timeout=10)
        for name, app in (("c1", "checkout"), ("c2", "checkout"), ("b1", "billing")):
            agents.append(AgentProcess(tmp_path, name, server.address, upstream.url(name),
                                       "--app-id", app, "--interval", "0.02", "--log-calls"))
        for agent in agents:
            agent.wait_for(lambda ev: sum(e["event"] == "call" for e in ev) >= 5, DEADLINE,
                           "calls before the trip")
        eventually(lambda: total(scrape(port), "fusebox_fleet_resiliency_loaded",
                                 'name="fleet"') == 3, deadline=DEADLINE,
                   what="the spec loaded by the three agents")

        upstream.mode = FAIL
        for agent in agents:
            agent.wait_for(lambda ev: any(e["event"] == "call" and e["result"] == "open"
                                          for e in ev), DEADLINE, "calls rejected")
        eventually(lambda: total(scrape(port), "fusebox_breaker_convergence_seconds_count")
                   == 1, deadline=DEADLINE, what="the trip's convergence observed")
        samples = scrape(port)
        assert total(samples, "fusebox_breaker_transitions_total") == 1
        assert total(samples, "fusebox_breaker_convergence_seconds_count", 'to_state="open"') == 1
        # A trip reaches three agents on loopback well within a second.
        assert total(samples, "fusebox_breaker_convergence_seconds_sum") < 1.0

        with grpc.insecure_channel(server.address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=spec(with_timeout=True)), timeout=10)
        eventually(lambda: total(scrape(port), "fusebox_policy_convergence_seconds_count")
                   == 2, deadline=DEADLINE, what="one snapshot convergence per app")

        samples = scrape(port)
        assert total(samples, "fusebox_convergence_pending") == 0
        assert total(samples, "fusebox_convergence_unfinished_total") == 0
        assert total(samples, "fusebox_fleet_resiliency_loaded", 'name="fleet"') == 3
        checkout = ('app_id="checkout"', 'spec="fleet"', 'target="upstream"')
        eventually(lambda: total(scrape(port), "fusebox_target_calls_total", *checkout,
                                 'outcome="rejected"') > 0, deadline=DEADLINE,
                   what="rejections reported")
        samples = scrape(port)
        assert total(samples, "fusebox_target_calls_total", *checkout, 'outcome="success"') >= 10
        assert total(samples, "fusebox_target_calls_total", *checkout, 'outcome="failure"') >= 1
        assert total(samples, "fusebox_target_calls_total", 'app_id="billing"',
                     'outcome="rejected"') > 0
    finally:
        for agent in agents:
            agent.stop()
        server.stop()
