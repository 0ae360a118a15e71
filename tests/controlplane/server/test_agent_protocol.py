"""AgentService spoken by a raw gRPC client: the protocol's edges and refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    breaker_pb2,
    breaker_pb2_grpc,
    policy_pb2,
    spec_pb2,
    spec_pb2_grpc,
)
from tests.support.specs import SEED_SPEC

DEADLINE = 10.0
HELD = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                             kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                             method="orders")
NOT_HELD = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                                 kind=policy_pb2.TARGET_KIND_APP, target="payments",
                                 method="charge")


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://")
    async with FuseboxServer(config) as srv, grpc.aio.insecure_channel(
        f"127.0.0.1:{srv.port}"
    ) as ch:
        await spec_pb2_grpc.SpecServiceStub(ch).ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
        yield ch


async def connect(channel: grpc.aio.Channel, app_id: str = "checkout") -> grpc.aio.StreamStreamCall:
    call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
    await call.write(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
        app_id=app_id, instance_id=f"{app_id}-raw")))
    first = await asyncio.wait_for(call.read(), DEADLINE)
    assert first.WhichOneof("message") == "snapshot"
    return call


def report(key: policy_pb2.BreakerKey, *runs: int) -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(
        breakers=[agent_pb2.BreakerOutcomes(key=key, runs=list(runs))], sequence=1))


async def breakers(channel: grpc.aio.Channel) -> list[str]:
    listed = await breaker_pb2_grpc.BreakerServiceStub(channel).ListBreakers(
        breaker_pb2.ListBreakersRequest())
    return [b.display_name for b in listed.breakers]


async def test_reports_for_breakers_without_a_policy_are_rejected_and_create_nothing(
    channel: grpc.aio.Channel,
) -> None:
    call = await connect(channel)
    await call.write(report(NOT_HELD, -10))
    answer = await asyncio.wait_for(call.read(), DEADLINE)
    assert answer.WhichOneof("message") == "report_rejected"
    assert answer.report_rejected.key == NOT_HELD
    assert "no circuit breaker policy" in answer.report_rejected.reason
    assert await breakers(channel) == []
    # The same stream still works for a breaker the app does hold.
    await call.write(report(HELD, 3, -5))
    async with asyncio.timeout(DEADLINE):
        while await breakers(channel) != ["order-processor:orders"]:  # noqa: ASYNC110 - polls RPCs
            await asyncio.sleep(0.01)
    call.cancel()


async def test_an_app_outside_the_spec_scope_cannot_report_for_its_breakers(
    channel: grpc.aio.Channel,
) -> None:
    call = await connect(channel, app_id="order-processor")  # the seed is scoped to checkout
    await call.write(report(HELD, -10))
    answer = await asyncio.wait_for(call.read(), DEADLINE)
    assert answer.WhichOneof("message") == "report_rejected"
    assert await breakers(channel) == []
    call.cancel()


async def test_interest_is_answered_with_the_cluster_state_and_trips_are_pushed(
    channel: grpc.aio.Channel,
) -> None:
    reporter = await connect(channel)
    watcher = await connect(channel)
    await watcher.write(agent_pb2.ConnectRequest(interest=agent_pb2.BreakerInterest(add=[HELD])))
    await reporter.write(report(HELD, -5))  # simpleCB: consecutiveFailures >= 5
    update = await asyncio.wait_for(watcher.read(), DEADLINE)
    assert update.WhichOneof("message") == "breaker_update"
    assert update.breaker_update.key == HELD
    assert update.breaker_update.state == breaker_pb2.BREAKER_STATE_OPEN
    assert update.breaker_update.open_remaining.ToMilliseconds() > 0
    # A late subscriber gets the current state at once.
    late = await connect(channel)
    await late.write(agent_pb2.ConnectRequest(interest=agent_pb2.BreakerInterest(add=[HELD])))
    current = await asyncio.wait_for(late.read(), DEADLINE)
    assert current.breaker_update.state == breaker_pb2.BREAKER_STATE_OPEN
    for call in (reporter, watcher, late):
        call.cancel()


async def test_leases_only_for_held_breakers_and_only_in_half_open(
    channel: grpc.aio.Channel,
) -> None:
    call = await connect(channel)
    stub = agent_pb2_grpc.AgentServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.AcquireProbeLease(agent_pb2.AcquireProbeLeaseRequest(
            instance_id="checkout-raw", key=NOT_HELD))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as stranger:
        await stub.AcquireProbeLease(agent_pb2.AcquireProbeLeaseRequest(
            instance_id="not-connected", key=HELD))
    assert stranger.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    closed = await stub.AcquireProbeLease(agent_pb2.AcquireProbeLeaseRequest(
        instance_id="checkout-raw", key=HELD))
    assert not closed.granted
    call.cancel()


async def test_a_report_beyond_the_size_bounds_closes_the_stream(
    channel: grpc.aio.Channel,
) -> None:
    call = await connect(channel)
    await call.write(report(HELD, *([1, -1] * 3000)))
    async with asyncio.timeout(DEADLINE):
        while (message := await call.read()) is not grpc.aio.EOF:
            assert message.WhichOneof("message") != "breaker_update"
    assert await breakers(channel) == []


async def announced_control_plane_id(port: int) -> str:
    """The control_plane_id of the snapshot a new agent stream gets first."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = agent_pb2_grpc.AgentServiceStub(ch).Connect()
        await call.write(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            app_id="checkout", instance_id=f"checkout-{port}")))
        first = await asyncio.wait_for(call.read(), DEADLINE)
        call.cancel()
    assert first.WhichOneof("message") == "snapshot"
    control_plane_id: str = first.snapshot.control_plane_id
    return control_plane_id


async def test_replicas_of_one_store_and_their_restarts_announce_one_control_plane_id(
    store_url: str,
) -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url=store_url)
    async with FuseboxServer(config) as first, FuseboxServer(config) as second:
        announced = [await announced_control_plane_id(first.port),
                     await announced_control_plane_id(second.port)]
    async with FuseboxServer(config) as restarted:
        announced.append(await announced_control_plane_id(restarted.port))
        assert announced[0] == await restarted.store.control_plane_id() != ""
    assert len(set(announced)) == 1, announced


async def test_a_separate_store_is_another_control_plane() -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://")
    async with FuseboxServer(config) as first, FuseboxServer(config) as second:
        assert (await announced_control_plane_id(first.port)
                != await announced_control_plane_id(second.port))
