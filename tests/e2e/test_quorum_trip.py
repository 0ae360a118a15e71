"""A quorum breaker with real processes: one bad instance opens only itself; K bad
instances open the fleet.

One ``fusebox serve`` (embedded store) and four agent processes, each calling its
own upstream every 20 ms. The breaker needs failures from 2 distinct instances
before the fleet opens. When one upstream fails, only the instance calling it
opens (its own breaker, ``origin: local``) while the fleet stays closed and the
other three keep calling; when a second one fails, the fleet opens and every
instance rejects, the healthy ones too (``origin: fleet``). ``GetBreaker`` names
the failing instances.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, spec_pb2, spec_pb2_grpc
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.upstream import Upstream

pytestmark = pytest.mark.e2e

DEADLINE = 30.0
AGENTS = 4
SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: quorum
spec:
  policies:
    circuitBreakers:
      fleetCB:
        maxRequests: 1
        interval: 60s
        timeout: 60s
        trip: totalFailures >= 3
        quorum:
          minInstances: 2
  targets:
    apps:
      upstream:
        circuitBreaker: fleetCB
"""


class Fleet:
    def __init__(self, workdir: Path, stack: ExitStack) -> None:
        self.server = stack.enter_context(ServerProcess(workdir))
        with grpc.insecure_channel(self.server.address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=SPEC), timeout=10)
        self.upstreams = [stack.enter_context(Upstream()) for _ in range(AGENTS)]
        self.agents = [
            AgentProcess(workdir, f"q{i}", self.server.address, self.upstreams[i].url,
                         "--interval", "0.02", "--log-calls", "--instance-id", f"instance-{i}")
            for i in range(AGENTS)
        ]
        for agent in self.agents:
            stack.callback(agent.stop)
        for agent in self.agents:
            agent.wait_for(lambda ev: any(e["event"] == "ready" for e in ev), DEADLINE, "ready")

    def breaker(self) -> breaker_pb2.Breaker:
        with grpc.insecure_channel(self.server.address) as channel:
            stub = breaker_pb2_grpc.BreakerServiceStub(channel)
            (listed,) = stub.ListBreakers(breaker_pb2.ListBreakersRequest(), timeout=10).breakers
            return stub.GetBreaker(breaker_pb2.GetBreakerRequest(key=listed.key),
                                   timeout=10).breaker


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with ExitStack() as stack:
        yield Fleet(tmp_path, stack)


def opened(origin: str):  # type: ignore[no-untyped-def]
    return lambda events: any(e["event"] == "state" and e["to"] == "open"
                              and e["origin"] == origin for e in events)


def calls_since(events: list[dict[str, object]], start: int, result: str) -> int:
    return sum(1 for e in events[start:] if e["event"] == "call" and e["result"] == result)


def test_one_bad_instance_opens_only_itself_and_two_open_the_fleet(fleet: Fleet) -> None:
    lone, second, *healthy = fleet.agents
    fleet.upstreams[0].failing = True
    lone.wait_for(opened("local"), DEADLINE, "the failing instance opening its own breaker")
    marks = [len(agent.events) for agent in healthy]
    for agent, mark in zip([second, *healthy], [len(second.events), *marks], strict=True):
        agent.wait_for(lambda ev, m=mark: calls_since(ev, m, "ok") >= 10, DEADLINE,
                       "ten more successful calls while one instance is open")
    breaker = fleet.breaker()
    assert breaker.state == breaker_pb2.BREAKER_STATE_CLOSED  # one instance is no quorum
    assert list(breaker.failing_instances) == ["instance-0"]
    assert all(calls_since(agent.events, 0, "open") == 0 for agent in healthy)

    fleet.upstreams[1].failing = True
    for agent in (second, *healthy):
        agent.wait_for(lambda ev: any(e["event"] == "state" and e["to"] == "open"
                                      for e in ev), DEADLINE, "the fleet opening")
    for agent in healthy:  # they never failed: the fleet's state opened them
        agent.wait_for(opened("fleet"), DEADLINE, "opened by the fleet")
        agent.wait_for(lambda ev: calls_since(ev, 0, "open") >= 1, DEADLINE, "a rejected call")
    breaker = fleet.breaker()
    assert breaker.state == breaker_pb2.BREAKER_STATE_OPEN
    assert sorted(breaker.failing_instances) == ["instance-0", "instance-1"]
    assert breaker.policy.quorum.min_instances == 2
