"""An in-process control plane on a free loopback port, over either store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import spec_pb2_grpc


@pytest.fixture(params=["embedded", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "embedded":
        return f"sqlite:///{tmp_path / 'fusebox.sqlite3'}"
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[FuseboxServer]:
    config = ServerConfig(listen="127.0.0.1:0", store_url=store_url, health_interval=0.1)
    async with FuseboxServer(config) as srv:
        yield srv


@pytest.fixture
async def channel(server: FuseboxServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def specs(channel: grpc.aio.Channel) -> spec_pb2_grpc.SpecServiceStub:
    return spec_pb2_grpc.SpecServiceStub(channel)
