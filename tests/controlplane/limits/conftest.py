"""A control plane whose limits are small enough to hit in a test, over either store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server.engines.breaker_hub import BreakerHub
from fusebox.v1 import agent_pb2, agent_pb2_grpc, policy_pb2, spec_pb2, spec_pb2_grpc
from tests.support.specs import SEED_SPEC

DEADLINE = 10.0
REPORT_BURST = 5
MAX_BREAKERS_PER_TARGET = 2


def held(method: str) -> policy_pb2.BreakerKey:
    """A breaker key app `checkout` holds under the seed spec (its simpleCB)."""
    return policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                                 kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                                 method=method)


def report(key: policy_pb2.BreakerKey, *runs: int) -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(
        breakers=[agent_pb2.BreakerOutcomes(key=key, runs=list(runs))], sequence=1))


async def connect(channel: grpc.aio.Channel, instance: str = "checkout-1"
                  ) -> grpc.aio.StreamStreamCall:
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    await call.write(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
        app_id="checkout", instance_id=instance)))
    first = await asyncio.wait_for(call.read(), DEADLINE)
    assert first.WhichOneof("message") == "snapshot"
    return call


@pytest.fixture(params=["embedded", "redis"])
def store_url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        return "memory://"
    url: str = request.getfixturevalue("redis_url")
    return url


def limited(server: FuseboxServer) -> FuseboxServer:
    """The server with a hub whose report rate and breaker budget are tiny (its
    report clock never moves, so the burst is all a stream gets)."""
    server.breakers = BreakerHub(
        server.breaker_store, server.hub, server.metrics, tick=0.001,
        report_rate=1.0, report_burst=REPORT_BURST,
        max_breakers_per_target=MAX_BREAKERS_PER_TARGET, monotonic=lambda: 0.0,
    )
    return server


@pytest.fixture
async def server(store_url: str, tmp_path: Path) -> AsyncIterator[FuseboxServer]:
    config = ServerConfig(listen="127.0.0.1:0", store_url=store_url, data_dir=tmp_path)
    async with limited(FuseboxServer(config)) as srv:
        yield srv


@pytest.fixture
async def channel(server: FuseboxServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        await spec_pb2_grpc.SpecServiceStub(ch).ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
        yield ch
