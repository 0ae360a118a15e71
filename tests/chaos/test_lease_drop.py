"""An agent killed (SIGKILL) while it holds the half-open probe lease.

Two agents share a breaker (``maxRequests: 1``, open timeout 1 s). The upstream
fails until both agents see the breaker open, then holds every request
(``hang``): whichever agent gets the one probe lease sends a probe that never
returns, and that agent is SIGKILLed before it can report. The lease must
expire (server ``lease_ttl``, 2 s by default) and half-open must go on without
it: the surviving agent gets a lease, its probe meets the now healthy upstream
and closes the breaker for the cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fusebox.v1 import breaker_pb2, spec_pb2, spec_pb2_grpc
from tests.chaos.support import FAIL, HANG, OK, ChaosUpstream, spec, the_breaker
from tests.support.eventually import eventually
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

DEADLINE = 20.0
CLOSED = breaker_pb2.BREAKER_STATE_CLOSED
HALF_OPEN = breaker_pb2.BREAKER_STATE_HALF_OPEN


def states_of(events: list[dict[str, object]]) -> list[object]:
    return [e["to"] for e in events if e["event"] == "state"]


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    with ChaosUpstream() as u:
        yield u


def test_lease_of_a_killed_agent_expires_and_half_open_goes_on(
    tmp_path: Path, upstream: ChaosUpstream
) -> None:
    redis = RedisServer(tmp_path / "redis")
    server = ServerProcess(tmp_path, store_url=redis.url)
    agents: dict[str, AgentProcess] = {}
    try:
        redis.start()
        server.start()
        with grpc.insecure_channel(server.address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=spec("chaos-lease", threshold=3)), timeout=10)
        for name in ("a", "b"):
            agents[name] = AgentProcess(tmp_path, name, server.address, upstream.url(name),
                                        "--interval", "0.02")
        for agent in agents.values():
            agent.wait_for(lambda ev: any(e["event"] == "ready" for e in ev), DEADLINE, "ready")
        eventually(lambda: upstream.count(OK) >= 10, deadline=DEADLINE, what="healthy traffic")

        upstream.mode = FAIL
        for agent in agents.values():
            agent.wait_for(lambda ev: "open" in states_of(ev), DEADLINE, "breaker open")
        upstream.mode = HANG
        holder_name = upstream.wait_for_hit(HANG, DEADLINE)  # its probe is in flight now
        holder = agents.pop(holder_name)
        (survivor,) = agents.values()
        breaker = the_breaker(server.address)
        assert breaker.state == HALF_OPEN and breaker.active_leases == 1, breaker
        holder.process.kill()  # SIGKILL: the lease is never reported
        holder.process.wait()
        upstream.mode = OK
        upstream.released.set()  # the dead agent's request may end now

        mark = len(survivor.events)
        survivor.wait_for(lambda ev: "closed" in states_of(ev[mark:]), DEADLINE,
                          "closed by the survivor's probe")
        closed = the_breaker(server.address)
        assert closed.state == CLOSED
        assert closed.active_leases == 0
        closing = closed.recent_transitions[-1]
        assert closing.to_state == CLOSED
        assert closing.cause == breaker_pb2.TRANSITION_CAUSE_PROBE_SUCCESS
        # Instance ids are "<host>-<pid>-<random>": the survivor reported the probe.
        assert f"-{survivor.process.pid}-" in closing.instance_id, closing
        # Only the holder's probe ever hung: the survivor was refused a lease meanwhile.
        assert upstream.count(HANG) == 1
        assert upstream.count(HANG, survivor.name) == 0
        holder.stop()
    finally:
        for agent in agents.values():
            agent.stop()
        server.stop()
        redis.stop()
