"""The aggregator's pacing: at most one round of breaker scripts per tick, but a report
after a quiet spell is applied at once (the failure that trips a breaker is not held
back a tick). The tick here is 30 s so that "held until the next tick" is unmistakable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.server import FuseboxServer, ServerConfig
from controlplane.server.breaker_hub import BreakerHub
from tests.controlplane.limits.conftest import report
from tests.controlplane.server.breaker_support import (
    ORDERS,
    consecutive_failures,
    seeded_stream,
    until_failures,
)

LONG_TICK = 30.0
HELD_BACK = 1.0  # far below the tick: a report applied within it was not held back


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[FuseboxServer]:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://", data_dir=tmp_path)
    srv = FuseboxServer(config)
    srv.breakers = BreakerHub(srv.breaker_store, srv.hub, srv.metrics, tick=LONG_TICK)
    async with srv:
        yield srv


async def test_a_report_after_a_quiet_spell_is_applied_at_once_and_the_next_waits_a_tick(
    server: FuseboxServer,
) -> None:
    async with seeded_stream(server) as (_, call):
        await call.write(report(ORDERS, -1))
        await until_failures(server, 1)  # well within LONG_TICK: no tick is waited for
        await call.write(report(ORDERS, -2))
        await asyncio.sleep(HELD_BACK)
        assert await consecutive_failures(server) == 1  # within the tick of the first apply
