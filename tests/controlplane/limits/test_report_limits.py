"""Per-stream report rate and per-target breaker budget: each refused with its
documented error while the server stays healthy and other agents keep working."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fusebox.controlplane.server import FuseboxServer
from fusebox.controlplane.server.engines.breaker_hub import BreakerHub
from fusebox.controlplane.server.engines.report_limits import TokenBucket
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc
from tests.controlplane.limits.conftest import (
    DEADLINE,
    MAX_BREAKERS_PER_TARGET,
    REPORT_BURST,
    connect,
    held,
    report,
)


async def listed(channel: grpc.aio.Channel) -> list[str]:
    response = await breaker_pb2_grpc.BreakerServiceStub(channel).ListBreakers(
        breaker_pb2.ListBreakersRequest())
    return sorted(b.display_name for b in response.breakers)


async def serving(channel: grpc.aio.Channel) -> bool:
    answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)


async def wait_for_breakers(channel: grpc.aio.Channel, expected: list[str]) -> None:
    async with asyncio.timeout(DEADLINE):
        while await listed(channel) != expected:  # noqa: ASYNC110 - polls RPCs
            await asyncio.sleep(0.01)


def test_the_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.1  # one token
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] += 100.0  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


async def test_a_stream_reporting_faster_than_its_rate_is_closed_with_resource_exhausted(
    channel: grpc.aio.Channel,
) -> None:
    flooder = await connect(channel, "checkout-flooder")
    for _ in range(REPORT_BURST + 1):
        await flooder.write(report(held("orders"), 1))
    try:
        async with asyncio.timeout(DEADLINE):
            while await flooder.read() is not grpc.aio.EOF:
                pass
        raise AssertionError("the flooding stream ended without an error")
    except grpc.aio.AioRpcError as refused:
        assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "reports/s" in (refused.details() or "")
    # Another agent is unaffected, and the server is healthy.
    other = await connect(channel, "checkout-other")
    await other.write(report(held("orders"), -1))
    await wait_for_breakers(channel, ["order-processor:orders"])
    assert await serving(channel)
    other.cancel()


async def test_breakers_beyond_a_targets_budget_are_rejected_and_never_stored(
    server: FuseboxServer, channel: grpc.aio.Channel,
) -> None:
    call = await connect(channel)
    for method in ("m1", "m2"):
        await call.write(report(held(method), 1))
    await wait_for_breakers(channel, ["order-processor:m1", "order-processor:m2"])
    await call.write(report(held("m3"), -1))
    answer = await asyncio.wait_for(call.read(), DEADLINE)
    assert answer.WhichOneof("message") == "report_rejected"
    assert answer.report_rejected.key == held("m3")
    assert f"already has {MAX_BREAKERS_PER_TARGET} breakers" in answer.report_rejected.reason
    # Existing breakers keep counting on the same stream; nothing new was stored.
    await call.write(report(held("m1"), -1))
    async with asyncio.timeout(DEADLINE):
        while (await server.breaker_store.list())[0].counts.total_failures != 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert await listed(channel) == ["order-processor:m1", "order-processor:m2"]
    assert await serving(channel)
    call.cancel()


async def test_a_restarted_hub_counts_the_breakers_already_stored(
    server: FuseboxServer, channel: grpc.aio.Channel,
) -> None:
    call = await connect(channel)
    for method in ("m1", "m2"):
        await call.write(report(held(method), 1))
    await wait_for_breakers(channel, ["order-processor:m1", "order-processor:m2"])
    call.cancel()
    fresh = BreakerHub(server.breaker_store, server.hub, server.metrics,
                       max_breakers_per_target=MAX_BREAKERS_PER_TARGET)
    await fresh.load_budget()
    from fusebox.agent.breaker_key import BreakerKey

    assert fresh.budget.admit(BreakerKey.from_proto(held("m1")))
    assert not fresh.budget.admit(BreakerKey.from_proto(held("m3")))
