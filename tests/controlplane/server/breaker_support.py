"""What the breaker-ingest tests share: an in-memory server, a seeded agent stream,
and the stored counts of the seed spec's `order-processor:orders` breaker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from fusebox.agent.breaker_key import BreakerKey
from fusebox.controlplane.server import FuseboxServer
from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.controlplane.limits.conftest import DEADLINE, connect, held
from tests.support.specs import SEED_SPEC

ORDERS = held("orders")


@asynccontextmanager
async def seeded_stream(
    server: FuseboxServer,
) -> AsyncIterator[tuple[grpc.aio.Channel, grpc.aio.StreamStreamCall]]:
    """A channel to ``server`` with the seed spec applied, and a connected agent stream."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
        call = await connect(channel)
        try:
            yield channel, call
        finally:
            call.cancel()


async def consecutive_failures(server: FuseboxServer) -> int:
    snapshot = await server.breaker_store.get(BreakerKey.from_proto(ORDERS))
    return 0 if snapshot is None else snapshot.counts.consecutive_failures


async def until_failures(server: FuseboxServer, wanted: int) -> None:
    async with asyncio.timeout(DEADLINE):  # not a tick: the aggregator applies at once
        while await consecutive_failures(server) != wanted:  # noqa: ASYNC110 - polls the store
            await asyncio.sleep(0.01)

