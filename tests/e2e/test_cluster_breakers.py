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
from grpc_health.v1 import health_pb2

from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, spec_pb2, spec_pb2_grpc
from tests.support.processes import AgentProcess, ServerProcess, wait_for_health
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
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def went(events: list[dict[str, object]], to: str, after: int = 0) -> bool:
    return any(e["event"] == "state" and e["to"] == to for e in events[after:])


def last_state(events: list[dict[str, object]]) -> object:
    states = [e["to"] for e in events if e["event"] == "state"]
    return states[-1] if states else "closed"


def went_through(events: list[dict[str, object]], states: list[str], after: int = 0) -> bool:
    """The breaker went to each of ``states`` in that order (others may come between)."""
    wanted = iter(states)
    target = next(wanted)
    for e in events[after:]:
        if e["event"] == "state" and e["to"] == target:
            target = next(wanted, None)  # type: ignore[arg-type]
            if target is None:
                return True
    return False


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

    time.sleep(2.5)  # two or three open -> half-open -> open cycles (timeout 1s)
    breaker = cluster.breaker()
    half_opens = [
        t.time.ToNanoseconds() / 1e9 for t in breaker.recent_transitions
        if t.to_state == breaker_pb2.BREAKER_STATE_HALF_OPEN
    ]
    assert half_opens
    # Every failing call since the first half-open is a probe: maxRequests = 1
    # per half-open period, for the whole fleet.
    probes = upstream.failing_hits(since=min(half_opens))
    assert probes <= len(half_opens), (probes, len(half_opens))

    upstream.failing = False
    marks = [len(a.events) for a in cluster.agents]
    for agent, mark in zip(cluster.agents, marks, strict=True):
        agent.wait_for(lambda ev, m=mark: went(ev, "closed", m), DEADLINE, "breaker closed")
    assert cluster.breaker(server=1).state == breaker_pb2.BREAKER_STATE_CLOSED


def test_agents_of_a_killed_replica_move_over_and_keep_enforcing(
    cluster: Cluster, upstream: Upstream
) -> None:
    cluster.servers[0].kill()
    # Every agent must end up on replica 1 and still trip together.
    upstream.failing = True
    for agent in cluster.agents:
        agent.wait_for(lambda ev: went(ev, "open"), DEADLINE, "breaker open after failover")
    assert cluster.breaker(server=1).state in (
        breaker_pb2.BREAKER_STATE_OPEN, breaker_pb2.BREAKER_STATE_HALF_OPEN
    )


def test_override_with_ttl_reaches_every_agent_and_expires(
    cluster: Cluster, upstream: Upstream
) -> None:
    # Breakers exist once agents have reported; the healthy traffic did that.
    key = cluster.breaker().key
    with grpc.insecure_channel(cluster.servers[1].address) as channel:
        stub = breaker_pb2_grpc.BreakerServiceStub(channel)
        stub.SetOverride(breaker_pb2.SetOverrideRequest(
            key=key, override=breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN,
            reason="e2e: drain order-processor", ttl={"seconds": 2},
        ), timeout=10)
    for agent in cluster.agents:
        agent.wait_for(lambda ev: went_through(ev, ["open", "closed"]), DEADLINE,
                       "forced open, then closed again once the override expired")
    assert upstream.failing_hits() == 0
    assert not cluster.breaker().HasField("override") or (
        cluster.breaker().override.override == breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED
    )


def test_redis_restart_keeps_specs_and_breakers_resync(
    cluster: Cluster, upstream: Upstream
) -> None:
    upstream.failing = True
    for agent in cluster.agents:
        agent.wait_for(lambda ev: went(ev, "open"), DEADLINE, "breaker open")
    cluster.redis.stop()
    for server in cluster.servers:
        wait_for_health(server.address, NOT_SERVING, deadline=DEADLINE)
    upstream.failing = False
    cluster.redis.start()
    for server in cluster.servers:
        wait_for_health(server.address, SERVING, deadline=DEADLINE)
    with grpc.insecure_channel(cluster.servers[0].address) as channel:
        listed = spec_pb2_grpc.SpecServiceStub(channel).ListSpecs(
            spec_pb2.ListSpecsRequest(), timeout=10
        )
    assert [s.name for s in listed.specs] == ["cluster"]
    # The breaker survived in Redis (AOF): agents adopt it again, a probe
    # succeeds (the upstream is healthy now) and it closes for the whole fleet.
    end = time.monotonic() + DEADLINE
    while cluster.breaker().state != breaker_pb2.BREAKER_STATE_CLOSED:
        assert time.monotonic() < end, "the cluster breaker never closed after the restart"
        time.sleep(0.1)
    for agent in cluster.agents:
        agent.wait_for(lambda ev: last_state(ev) == "closed", DEADLINE, "closed after resync")
