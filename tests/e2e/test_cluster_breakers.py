"""Cluster-wide breakers end to end: real Redis, two server replicas, six agents.

An upstream starts failing; the breaker must open after the threshold counted
over every agent's failures (not threshold x agents), every agent must fail
fast afterwards, half-open must let at most maxRequests probes through across
the fleet, and recovery must close it everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from agent._proto.fusebox.v1 import breaker_pb2, breaker_pb2_grpc, spec_pb2, spec_pb2_grpc
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.redis_server import RedisServer
from tests.support.upstream import Upstream

pytestmark = pytest.mark.e2e

THRESHOLD = 5
AGENTS = 6
SPEC = f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: cluster
scopes: [checkout]
spec:
  policies:
    circuitBreakers:
      shared:
        maxRequests: 1
        timeout: 1s
        trip: consecutiveFailures >= {THRESHOLD}
  targets:
    apps:
      upstream:
        circuitBreaker: shared
"""
DEADLINE = 20.0


def went(events: list[dict[str, object]], to: str, after: int = 0) -> bool:
    return any(e["event"] == "state" and e["to"] == to for e in events[after:])


class Cluster:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis")
        self.servers: list[ServerProcess] = []
        self.agents: list[AgentProcess] = []

    def start(self, upstream: Upstream) -> None:
        self.redis.start()
        for _ in range(2):
            server = ServerProcess(self.workdir, store_url=self.redis.url)
            server.start()
            self.servers.append(server)
        with grpc.insecure_channel(self.servers[0].address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=SPEC), timeout=10
            )
        a, b = (s.address for s in self.servers)
        for i in range(AGENTS):
            # pick_first over both replicas: half the fleet prefers each one and
            # moves to the other when its replica dies.
            order = f"{a},{b}" if i % 2 == 0 else f"{b},{a}"
            self.agents.append(AgentProcess(self.workdir, f"a{i}", f"ipv4:{order}", upstream.url))
        for agent in self.agents:
            agent.wait_for(lambda ev: any(e["event"] == "ready" for e in ev), DEADLINE, "ready")

    def breaker(self, server: int = 0) -> breaker_pb2.Breaker:
        with grpc.insecure_channel(self.servers[server].address) as channel:
            stub = breaker_pb2_grpc.BreakerServiceStub(channel)
            (listed,) = stub.ListBreakers(breaker_pb2.ListBreakersRequest(), timeout=10).breakers
            return stub.GetBreaker(
                breaker_pb2.GetBreakerRequest(key=listed.key), timeout=10
            ).breaker

    def stop(self) -> None:
        for agent in self.agents:
            agent.stop()
        for server in self.servers:
            server.stop()
        self.redis.stop()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as u:
        yield u


@pytest.fixture
def cluster(tmp_path: Path, upstream: Upstream) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start(upstream)
        yield c
    finally:
        c.stop()


def test_fleet_trips_once_probes_once_and_recovers(cluster: Cluster, upstream: Upstream) -> None:
    started = time.time()
    upstream.failing = True
    for agent in cluster.agents:
        agent.wait_for(lambda ev: went(ev, "open"), DEADLINE, "breaker open")
    wasted = upstream.failing_hits(since=started)
    # Per-instance breakers would let THRESHOLD x AGENTS = 30 failing calls through.
    assert THRESHOLD <= wasted <= THRESHOLD + 2 * AGENTS, wasted
    assert wasted < THRESHOLD * AGENTS

    all_open = time.time()
    time.sleep(2.5)  # two or three open -> half-open -> open cycles (timeout 1s)
    breaker = cluster.breaker()
    half_opens = sum(
        1 for t in breaker.recent_transitions
        if t.to_state == breaker_pb2.BREAKER_STATE_HALF_OPEN
        and t.time.ToNanoseconds() / 1e9 >= all_open
    )
    probes = upstream.failing_hits(since=all_open)
    assert half_opens >= 1
    assert probes <= half_opens  # maxRequests = 1 probe per half-open, fleet-wide

    upstream.failing = False
    marks = [len(a.events) for a in cluster.agents]
    for agent, mark in zip(cluster.agents, marks, strict=True):
        agent.wait_for(lambda ev, m=mark: went(ev, "closed", m), DEADLINE, "breaker closed")
    assert cluster.breaker(server=1).state == breaker_pb2.BREAKER_STATE_CLOSED
