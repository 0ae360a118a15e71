"""kill -9 of a server replica under load: agents move over, no guarded call fails.

Two replicas on one redis-server, four agent processes calling a healthy
upstream every 20 ms, each given both replicas (``ipv4:a,b``; the agent
shuffles the list, so they spread over both). The replica holding the most
agents is SIGKILLed: every agent must be connected to the other within 2 s,
and since the upstream is healthy, every call, before, during and after the
failover, must succeed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.chaos.support import OK, ChaosUpstream, metric, metrics_args, spec
from tests.support.eventually import eventually
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

AGENTS = 4
FAILOVER_DEADLINE = 2.0
CONNECTED = "fusebox_connected_agents"


def calls(agent: AgentProcess) -> list[object]:
    return [e["result"] for e in list(agent.events) if e["event"] == "call"]


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    with ChaosUpstream() as u:
        yield u


def test_agents_move_to_the_surviving_replica_and_no_call_fails(
    tmp_path: Path, upstream: ChaosUpstream
) -> None:
    redis = RedisServer(tmp_path / "redis")
    servers: list[tuple[ServerProcess, int]] = []
    agents: list[AgentProcess] = []
    try:
        redis.start()
        for _ in range(2):
            args, port = metrics_args()
            server = ServerProcess(tmp_path, store_url=redis.url, extra_args=args)
            server.start()
            servers.append((server, port))
        with grpc.insecure_channel(servers[0][0].address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=spec("chaos-kill")), timeout=10)
        target = "ipv4:" + ",".join(server.address for server, _ in servers)
        for i in range(AGENTS):
            agents.append(AgentProcess(tmp_path, f"a{i}", target, upstream.url(f"a{i}"),
                                       "--interval", "0.02", "--log-calls"))
        for agent in agents:
            agent.wait_for(lambda ev: any(e["event"] == "ready" for e in ev), 30, "ready")
        held: list[float] = []

        def every_agent_connected() -> bool:
            held[:] = [metric(port, CONNECTED) or 0.0 for _, port in servers]
            return sum(held) == AGENTS

        eventually(every_agent_connected, deadline=30, what="every agent connected")
        # The victim is whichever replica the shuffle gave the most agents.
        victim_index = 0 if held[0] >= held[1] else 1
        victim = servers[victim_index][0]
        survivor_metrics = servers[1 - victim_index][1]
        # Under load: every agent has been calling for a while.
        for agent in agents:
            agent.wait_for(lambda ev: sum(e["event"] == "call" for e in ev) >= 10, 30,
                           "calls before the kill")

        victim.kill()  # SIGKILL: no goodbye to the agents
        took = eventually(lambda: metric(survivor_metrics, CONNECTED) == AGENTS,
                          deadline=FAILOVER_DEADLINE, what="every agent on the surviving replica")
        marks = [len(calls(agent)) for agent in agents]
        for agent, mark in zip(agents, marks, strict=True):
            agent.wait_for(lambda ev, m=mark: sum(e["event"] == "call" for e in ev) >= m + 10,
                           30, "calls after the failover")
        print(f"failover took {took:.3f}s")
        for agent in agents:
            results = calls(agent)
            assert results and set(results) == {OK}, (agent.name, sorted(set(map(str, results))))
        assert upstream.count("fail") == 0
    finally:
        for agent in agents:
            agent.stop()
        for server, _ in servers:
            server.stop()
        redis.stop()
    # Checked after stopping: each agent really kept calling through the kill.
    assert all(len(calls(agent)) > 20 for agent in agents)
