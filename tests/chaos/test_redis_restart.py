"""Redis killed (SIGKILL) and restarted under load: no half-written state, breakers resync.

Two replicas, four agents calling a healthy upstream every 20 ms, so outcome
reports stream into Redis when it dies. While Redis is down the replicas say
NOT_SERVING, agents go local, and calls keep succeeding. After the restart
(same port, AOF replayed): the spec is there, the breaker reads back whole and
sane (state closed, counters consistent, generation not lost), and the cluster
breaker works again end to end: a failing upstream opens it on every agent,
recovery closes it everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from fusebox.v1 import breaker_pb2, spec_pb2, spec_pb2_grpc
from tests.chaos.support import FAIL, OK, ChaosUpstream, spec, the_breaker
from tests.support.eventually import eventually
from tests.support.processes import AgentProcess, ServerProcess, wait_for_health
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

AGENTS = 4
THRESHOLD = 5
DEADLINE = 20.0
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
CLOSED = breaker_pb2.BREAKER_STATE_CLOSED


def calls(agent: AgentProcess, after: int = 0) -> list[object]:
    return [e["result"] for e in list(agent.events)[after:] if e["event"] == "call"]


def assert_sane(breaker: breaker_pb2.Breaker) -> None:
    """A breaker record read back whole: counters agree with each other."""
    c = breaker.counts
    assert c.requests == c.total_successes + c.total_failures, c
    assert c.consecutive_successes <= c.total_successes, c
    assert c.consecutive_failures <= c.total_failures, c
    assert not (c.consecutive_successes and c.consecutive_failures), c
    assert breaker.policy.trip, "policy missing from the breaker record"
    assert breaker.active_leases <= breaker.policy.max_requests


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    with ChaosUpstream() as u:
        yield u


def test_redis_kill_and_restart_under_load(tmp_path: Path, upstream: ChaosUpstream) -> None:
    redis = RedisServer(tmp_path / "redis")
    servers = [ServerProcess(tmp_path, store_url=redis.url) for _ in range(2)]
    agents: list[AgentProcess] = []
    try:
        redis.start()
        for server in servers:
            server.start()
        with grpc.insecure_channel(servers[0].address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=spec("chaos-redis", threshold=THRESHOLD)),
                timeout=10)
        a, b = (s.address for s in servers)
        for i in range(AGENTS):
            order = f"{a},{b}" if i % 2 == 0 else f"{b},{a}"
            agents.append(AgentProcess(tmp_path, f"a{i}", f"ipv4:{order}", upstream.url(f"a{i}"),
                                       "--interval", "0.02", "--log-calls"))
        for agent in agents:
            agent.wait_for(lambda ev: sum(e["event"] == "call" for e in ev) >= 10, DEADLINE,
                           "calls before the kill")
        eventually(lambda: the_breaker(a).counts.total_successes > 0,
                   deadline=DEADLINE, what="outcomes reaching Redis")
        before = the_breaker(a)
        assert_sane(before)

        redis.kill()  # mid-stream: reports are being applied right now
        for server in servers:
            wait_for_health(server.address, NOT_SERVING, deadline=DEADLINE)
        marks = [len(agent.events) for agent in agents]
        for agent, mark in zip(agents, marks, strict=True):
            agent.wait_for(lambda ev, m=mark: sum(e["event"] == "call" for e in ev[m:]) >= 10,
                           DEADLINE, "calls while Redis is down")
        redis.start()
        for server in servers:
            wait_for_health(server.address, SERVING, deadline=DEADLINE)

        with grpc.insecure_channel(b) as channel:
            listed = spec_pb2_grpc.SpecServiceStub(channel).ListSpecs(
                spec_pb2.ListSpecsRequest(), timeout=10)
        assert [s.name for s in listed.specs] == ["chaos-redis"]
        after = the_breaker(b)
        assert_sane(after)
        assert after.state == CLOSED
        assert after.generation >= before.generation
        # Reports flow again after the restart (agents resynced their streams).
        eventually(lambda: the_breaker(b).counts.total_successes
                   > after.counts.total_successes,
                   deadline=DEADLINE, what="outcomes after the restart")
        for agent in agents:
            assert set(calls(agent)) == {OK}, (agent.name, set(map(str, calls(agent))))
        # Every agent follows the fleet again (an agent still per instance would let
        # its own THRESHOLD failures through whatever the fleet does).
        for agent in agents:
            agent.wait_for(lambda ev: [e["mode"] for e in ev if e["event"] == "mode"][-1:]
                           == ["cluster"], DEADLINE, "following the fleet again")

        # The shared breaker works again across the fleet.
        marks = [len(agent.events) for agent in agents]
        upstream.mode = FAIL
        for agent, mark in zip(agents, marks, strict=True):
            agent.wait_for(lambda ev, m=mark: "open" in states_of(ev[m:]), DEADLINE,
                           "breaker open after the restart")
        eventually(lambda: the_breaker(a).state != CLOSED, deadline=DEADLINE, what="open in Redis")
        # Fewer failing calls than per-instance breakers would let through.
        assert upstream.count(FAIL) < THRESHOLD * AGENTS
        upstream.mode = OK
        for agent, mark in zip(agents, marks, strict=True):
            agent.wait_for(lambda ev, m=mark: states_of(ev[m:])[-1:] == ["closed"], DEADLINE,
                           "closed again everywhere")
        eventually(lambda: the_breaker(a).state == CLOSED,
                   deadline=DEADLINE, what="closed in Redis")
        assert_sane(the_breaker(a))
    finally:
        for agent in agents:
            agent.stop()
        for server in servers:
            server.stop()
        redis.stop()


def states_of(events: list[dict[str, object]]) -> list[object]:
    return [e["to"] for e in events if e["event"] == "state"]
