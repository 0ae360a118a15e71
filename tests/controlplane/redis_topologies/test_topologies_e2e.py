"""`fusebox serve` on a Redis Cluster and behind Sentinel, end to end: real
redis-server processes, a real server process, a real agent, all on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, spec_pb2, spec_pb2_grpc
from tests.support.processes import AgentProcess, ServerProcess, wait_for_health
from tests.support.redis_cluster import RedisClusterProcesses
from tests.support.redis_sentinel import RedisSentinelSetup
from tests.support.upstream import Upstream

pytestmark = pytest.mark.e2e

DEADLINE = 20.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: {name}
scopes: [checkout]
spec:
  policies:
    circuitBreakers:
      shared:
        maxRequests: 1
        timeout: {timeout}
        trip: consecutiveFailures >= 3
  targets:
    apps:
      upstream:
        circuitBreaker: shared
"""


def apply(address: str, name: str, timeout: str = "30s") -> int:
    with grpc.insecure_channel(address) as channel:
        reply = spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SPEC.format(name=name, timeout=timeout)), timeout=10
        )
    revision: int = reply.specs[0].revision
    return revision


def get_spec(address: str, name: str) -> spec_pb2.Spec:
    with grpc.insecure_channel(address) as channel:
        reply = spec_pb2_grpc.SpecServiceStub(channel).GetSpec(
            spec_pb2.GetSpecRequest(name=name), timeout=10
        )
    spec: spec_pb2.Spec = reply.spec
    return spec


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as u:
        yield u


def test_a_server_on_a_redis_cluster_serves_specs_and_trips_breakers(
    tmp_path: Path, redis_cluster: RedisClusterProcesses, redis_cluster_url: str,
    upstream: Upstream,
) -> None:
    with ServerProcess(tmp_path, store_url=redis_cluster_url) as server:
        assert apply(server.address, "cluster") == 1
        agent = AgentProcess(tmp_path, "a0", f"ipv4:{server.address}", upstream.url)
        try:
            agent.wait_for(lambda ev: any(e["event"] == "ready" for e in ev), DEADLINE, "ready")
            upstream.failing = True
            agent.wait_for(
                lambda ev: any(e["event"] == "state" and e["to"] == "open" for e in ev),
                DEADLINE, "breaker open (pushed from the partition's transitions stream)",
            )
        finally:
            agent.stop()
        with grpc.insecure_channel(server.address) as channel:
            stub = breaker_pb2_grpc.BreakerServiceStub(channel)
            (listed,) = stub.ListBreakers(breaker_pb2.ListBreakersRequest(), timeout=10).breakers
            breaker = stub.GetBreaker(
                breaker_pb2.GetBreakerRequest(key=listed.key), timeout=10
            ).breaker
        assert breaker.state == breaker_pb2.BREAKER_STATE_OPEN
        assert [(t.from_state, t.to_state) for t in breaker.recent_transitions] == [
            (breaker_pb2.BREAKER_STATE_CLOSED, breaker_pb2.BREAKER_STATE_OPEN)
        ]
        assert get_spec(server.address, "cluster").revision == 1
    # The spec keys share one slot; the breaker keys live in their partition's slot.
    ports = set(redis_cluster.ports)
    assert redis_cluster.node_of_key("fusebox:{specs}:live") in ports


def test_a_sentinel_failover_keeps_committed_specs_and_the_server_carries_on(
    tmp_path: Path, redis_sentinel: RedisSentinelSetup
) -> None:
    with ServerProcess(tmp_path, store_url=redis_sentinel.url) as server:
        assert apply(server.address, "before") == 1
        assert apply(server.address, "before", timeout="20s") == 2
        old_master = redis_sentinel.master_port

        redis_sentinel.kill_master()
        wait_for_health(server.address, NOT_SERVING, deadline=DEADLINE, process=server.process,
                        log=server.log)
        new_master = redis_sentinel.wait_for_promotion()
        wait_for_health(server.address, SERVING, deadline=DEADLINE, process=server.process,
                        log=server.log)

        assert new_master != old_master
        # Committed = acknowledged by a replica (WAIT 1): the promoted one has it.
        before = get_spec(server.address, "before")
        assert (before.revision, before.document["spec"]["policies"]["circuitBreakers"]
                ["shared"]["timeout"]) == (2, "20s")
        redis_sentinel.wait_for_replicas_in_sync()
        assert apply(server.address, "after") == 1
        assert apply(server.address, "before", timeout="10s") == 3
    assert redis_sentinel.master_command("EXISTS", "fusebox:{specs}:live") == "1"
