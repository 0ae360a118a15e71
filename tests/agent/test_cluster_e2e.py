"""Two agents, one real in-process control plane: the breaker trips once for both.

Failures reported by both agents add up to the trip threshold; both then
reject locally; after the open timeout the cluster goes half-open and exactly
``maxRequests`` probe runs across both agents; its success closes the breaker
everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from fusebox.agent import AsyncAgent, BreakerOpenError, BreakerState
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.support.eventually import eventually_async

SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: resiliency
spec:
  policies:
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        timeout: 300ms
        trip: consecutiveFailures >= 4
  targets:
    apps:
      order-processor:
        circuitBreaker: simpleCB
"""
NAME = "order-processor:orders"




@pytest.fixture
async def server() -> AsyncIterator[FuseboxServer]:
    async with FuseboxServer(ServerConfig(listen="127.0.0.1:0", store_url="memory://")) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=SPEC))
        yield srv


@pytest.fixture
async def agents(server: FuseboxServer, tmp_path: Path) -> AsyncIterator[list[AsyncAgent]]:
    fleet = [
        AsyncAgent(app_id="checkout", server=f"127.0.0.1:{server.port}",
                   instance_id=f"checkout-{i}", cache_path=tmp_path / f"cache-{i}.pb",
                   report_interval=0.005, probe_lease_timeout=1.0)
        for i in range(2)
    ]
    for fb in fleet:
        await fb.start()
    await eventually_async(lambda: all(
        fb.policies is not None and fb.policies.targets and fb._link.cluster.following
        for fb in fleet
    ))
    yield fleet
    for fb in fleet:
        await fb.aclose()


class Upstream:
    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if not self.healthy:
            raise ConnectionError("order-processor is down")
        return "ok"


async def call(fb: AsyncAgent, upstream: Upstream) -> str:
    try:
        return await fb.app("order-processor", method="orders").call(upstream)
    except BreakerOpenError:
        return "rejected"
    except ConnectionError:
        return "failed"


def states(fleet: list[AsyncAgent]) -> list[BreakerState | None]:
    return [fb.breaker_states().get(NAME) for fb in fleet]


async def test_failures_from_both_agents_trip_once_then_one_probe_closes_it_for_both(
    agents: list[AsyncAgent],
) -> None:
    a, b = agents
    upstream = Upstream()
    # Two failures each: below the threshold for either agent alone, at it together.
    for fb in (a, b, a, b):
        assert await call(fb, upstream) == "failed"
    await eventually_async(lambda: states(agents) == [BreakerState.OPEN] * 2)
    assert [await call(fb, upstream) for fb in (a, b, a, b)] == ["rejected"] * 4
    assert upstream.calls == 4

    await eventually_async(lambda: states(agents) == [BreakerState.HALF_OPEN] * 2)
    upstream.healthy = True
    upstream.gate = asyncio.Event()
    calls_before = upstream.calls
    first = asyncio.create_task(call(a, upstream))
    second = asyncio.create_task(call(b, upstream))
    # One of them holds the only lease (its probe waits at the gate); the other is refused.
    await eventually_async(lambda: upstream.calls == calls_before + 1
                     and (first.done() or second.done()))
    upstream.gate.set()
    assert sorted(await asyncio.gather(first, second)) == ["ok", "rejected"]
    assert upstream.calls == calls_before + 1
    await eventually_async(lambda: states(agents) == [BreakerState.CLOSED] * 2)
    assert [await call(fb, upstream) for fb in (a, b)] == ["ok", "ok"]
