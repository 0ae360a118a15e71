"""Agents spread over the replicas a target names: one connection each (pick_first),
to an address picked at random (shuffleAddressList), whatever order the list gives."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fusebox.agent._link import LinkConfig

REPLICAS = 3
CHANNELS = 30


@pytest.fixture
async def replicas() -> AsyncIterator[list[int]]:
    """Three gRPC servers; each one's health service knows only its own name."""
    servers, ports = [], []
    for i in range(REPLICAS):
        server = grpc.aio.server()
        servicer = health.aio.HealthServicer()
        await servicer.set(f"replica-{i}", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    yield ports
    for server in servers:
        await server.stop(None)


async def answering_replica(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    for i in range(REPLICAS):
        try:
            await stub.Check(health_pb2.HealthCheckRequest(service=f"replica-{i}"), timeout=5)
        except grpc.aio.AioRpcError as e:
            assert e.code() is grpc.StatusCode.NOT_FOUND
            continue
        return i
    raise AssertionError("no replica answered")


async def test_agents_given_the_same_address_list_spread_over_every_replica(
    replicas: list[int],
) -> None:
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in replicas)
    landed: collections.Counter[int] = collections.Counter()
    for _ in range(CHANNELS):
        async with LinkConfig(target=target).open_channel() as channel:
            first = await answering_replica(channel)
            assert await answering_replica(channel) == first  # one connection, kept
            landed[first] += 1
    # All 30 on one replica has a probability of 3 / 3**30 with a fair shuffle.
    assert len(landed) == REPLICAS, landed
