"""A WatchBreakers client that stops reading is disconnected with
RESOURCE_EXHAUSTED once its backlog is full; other watchers keep their events."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from fusebox.agent.breaker import BreakerOverride
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy, TargetKind
from fusebox.controlplane.breakers.model import OutcomeBatch
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server.services import breaker_service
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc

DEADLINE = 20.0
BACKLOG = 8
EVENTS = 3000  # ~1 MB of messages: far beyond what HTTP/2 flow control lets through
BREAKER = BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "orders")
POLICY = CircuitBreakerPolicy("simpleCB", max_requests=1, interval=0, timeout=30,
                              trip="consecutiveFailures >= 5")


async def test_a_watcher_that_does_not_read_is_disconnected_and_others_keep_watching(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(breaker_service, "WATCH_BACKLOG", BACKLOG)
    # Generous for the reading watcher on a loaded machine, short for the test.
    monkeypatch.setattr(breaker_service, "WATCH_STALL_SECONDS", 2.0)
    caplog.set_level(logging.WARNING, logger="fusebox.server.breakers")
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://")
    async with FuseboxServer(config) as server:
        await server.breaker_store.apply([OutcomeBatch(BREAKER, POLICY, (1,), "i-1")])
        address = f"127.0.0.1:{server.port}"
        # No BDP probing: the slow client's receive window stays at its 64 KiB default.
        slow_channel = grpc.aio.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0)])
        async with slow_channel, grpc.aio.insecure_channel(address) as fast_channel:
            request = breaker_pb2.WatchBreakersRequest()
            slow = breaker_pb2_grpc.BreakerServiceStub(slow_channel).WatchBreakers(request)
            fast = breaker_pb2_grpc.BreakerServiceStub(fast_channel).WatchBreakers(request)
            assert (await slow.read()).snapshot and (await fast.read()).snapshot
            seen = 0

            async def read_fast() -> None:
                nonlocal seen
                while seen < EVENTS:
                    message = await fast.read()
                    assert message is not grpc.aio.EOF
                    seen += 1

            reader = asyncio.create_task(read_fast())
            for n in range(EVENTS):
                override = BreakerOverride.FORCE_OPEN if n % 2 == 0 else None
                await server.breaker_store.set_override(
                    BREAKER, override, reason=f"toggle {n} " + "x" * 200, ttl=None, set_by="test"
                )
            async with asyncio.timeout(DEADLINE):
                await reader  # the reading watcher got every event
                while "slow breaker watcher disconnected" not in caplog.text:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
            with pytest.raises(grpc.aio.AioRpcError) as disconnected:
                async with asyncio.timeout(DEADLINE):
                    while await slow.read() is not grpc.aio.EOF:
                        pass
            assert disconnected.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"watch backlog: {BACKLOG} events waited" in (disconnected.value.details() or "")
            assert "from_revision=" in (disconnected.value.details() or "")
            fast.cancel()
