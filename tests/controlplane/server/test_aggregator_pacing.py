"""The aggregator's pacing: success-only reports share at most one round of breaker
scripts per tick, but a report after a quiet spell, and any report carrying a failure
(which can trip a breaker), is applied at once. The tick here is 30 s so that "held
until the next tick" is unmistakable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server.engines.breaker_hub import BreakerHub
from fusebox.v1 import agent_pb2, breaker_pb2
from tests.controlplane.limits.conftest import DEADLINE, report
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


async def test_successes_wait_for_the_tick_but_a_failure_is_applied_at_once(
    server: FuseboxServer,
) -> None:
    async with seeded_stream(server) as (_, call):
        await call.write(report(ORDERS, -1))
        await until_failures(server, 1)  # well within LONG_TICK: no tick is waited for
        await call.write(report(ORDERS, 3))  # successes only: they wait for the tick
        await asyncio.sleep(HELD_BACK)
        assert await consecutive_failures(server) == 1  # within the tick of the first apply
        await call.write(report(ORDERS, -2))  # a failure: at once, with what waited before it
        await until_failures(server, 2)


class StreamlessStore:
    """The embedded store, except that its transitions stream never delivers."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def read_events(self, after: str, *, block: float = 0.0,
                          count: int = 1000) -> tuple[str, list[Any]]:
        await asyncio.sleep(block)
        return after, []


async def test_the_replica_that_applies_a_trip_pushes_it_without_reading_the_stream(
    tmp_path: Path,
) -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://", data_dir=tmp_path)
    srv = FuseboxServer(config)
    srv.breakers = BreakerHub(StreamlessStore(srv.breaker_store), srv.hub,  # type: ignore[arg-type]
                              srv.metrics)
    async with srv, seeded_stream(srv) as (_, call):
        await call.write(agent_pb2.ConnectRequest(
            interest=agent_pb2.BreakerInterest(add=[ORDERS])))
        await call.write(report(ORDERS, -5))  # the seed spec trips on 5 consecutive failures
        async with asyncio.timeout(DEADLINE):
            while True:
                message = await call.read()
                if message.WhichOneof("message") == "breaker_update":
                    break
        assert message.breaker_update.state == breaker_pb2.BREAKER_STATE_OPEN
        assert message.breaker_update.cause == breaker_pb2.TRANSITION_CAUSE_TRIP
