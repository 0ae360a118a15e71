"""Reports made under an older breaker generation are dropped, as gobreaker drops the
results of requests admitted before a state change; current reports count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from prometheus_client import generate_latest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import agent_pb2, breaker_pb2, breaker_pb2_grpc, policy_pb2
from tests.controlplane.limits.conftest import DEADLINE
from tests.controlplane.server.breaker_support import (
    ORDERS,
    consecutive_failures,
    seeded_stream,
    until_failures,
)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[FuseboxServer]:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://", data_dir=tmp_path)
    async with FuseboxServer(config) as srv:
        yield srv


def outcomes(key: policy_pb2.BreakerKey, generation: int, *runs: int) -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(breakers=[
        agent_pb2.BreakerOutcomes(key=key, runs=list(runs), generation=generation)]))


async def next_update(call: grpc.aio.StreamStreamCall) -> agent_pb2.BreakerUpdate:
    async with asyncio.timeout(DEADLINE):
        while True:
            response = await call.read()
            if response.WhichOneof("message") == "breaker_update":
                return response.breaker_update


def stale_metric(server: FuseboxServer) -> float:
    for line in generate_latest(server.metrics.registry).decode().splitlines():
        if line.startswith("fusebox_outcomes_stale_total "):
            return float(line.split()[1])
    raise AssertionError("fusebox_outcomes_stale_total not exported")


async def test_outcomes_of_a_past_generation_are_dropped_and_counted_as_stale(
    server: FuseboxServer,
) -> None:
    async with seeded_stream(server) as (channel, call):
        await call.write(agent_pb2.ConnectRequest(
            interest=agent_pb2.BreakerInterest(add=[ORDERS])))
        await call.write(outcomes(ORDERS, 0, -1))
        await until_failures(server, 1)

        await breaker_pb2_grpc.BreakerServiceStub(channel).ResetBreaker(
            breaker_pb2.ResetBreakerRequest(key=ORDERS, reason="a new generation"))
        update = await next_update(call)
        assert update.generation >= 1 and update.state == breaker_pb2.BREAKER_STATE_CLOSED

        # Two failures of calls admitted before the reset, then one after it.
        await call.write(outcomes(ORDERS, update.generation - 1, -2))
        await call.write(outcomes(ORDERS, update.generation, -1))
        await until_failures(server, 1)
        await asyncio.sleep(0.1)  # a few ticks: nothing else arrives late
        assert await consecutive_failures(server) == 1
        assert stale_metric(server) == 2
