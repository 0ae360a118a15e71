"""The aggregator's pacing: at most one round of breaker scripts per tick, but a report
after a quiet spell is applied at once (the failure that trips a breaker is not held
back a tick). The tick here is 30 s so that "held until the next tick" is unmistakable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agent._proto.fusebox.v1 import spec_pb2, spec_pb2_grpc
from controlplane.breakers.model import breaker_id_from_proto
from controlplane.server import FuseboxServer, ServerConfig
from controlplane.server.breaker_hub import BreakerHub
from tests.controlplane.limits.conftest import DEADLINE, connect, held, report
from tests.support.specs import SEED_SPEC

LONG_TICK = 30.0
HELD_BACK = 1.0  # far below the tick: a report applied within it was not held back


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[FuseboxServer]:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://", data_dir=tmp_path)
    srv = FuseboxServer(config)
    srv.breakers = BreakerHub(srv.breaker_store, srv.hub, srv.metrics, tick=LONG_TICK)
    async with srv:
        yield srv


async def failures(server: FuseboxServer) -> int:
    snapshot = await server.breaker_store.get(breaker_id_from_proto(held("orders")))
    return 0 if snapshot is None else snapshot.counts.consecutive_failures


async def test_a_report_after_a_quiet_spell_is_applied_at_once_and_the_next_waits_a_tick(
    server: FuseboxServer,
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
        call = await connect(channel)
        await call.write(report(held("orders"), -1))
        async with asyncio.timeout(DEADLINE):  # not LONG_TICK: no tick is waited for
            while await failures(server) != 1:  # noqa: ASYNC110 - polls the store
                await asyncio.sleep(0.01)
        await call.write(report(held("orders"), -2))
        await asyncio.sleep(HELD_BACK)
        assert await failures(server) == 1  # within the tick of the first apply: waits
        call.cancel()
