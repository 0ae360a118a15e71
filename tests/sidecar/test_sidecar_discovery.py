"""Sidecars find each other through the control plane; several instances take turns."""

from __future__ import annotations

import grpc

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.sidecar._discovery import AppResolver, RegistryConnection
from fusebox.v1 import registry_pb2, registry_pb2_grpc


async def test_several_instances_of_an_app_are_balanced_round_robin() -> None:
    async with FuseboxServer(ServerConfig(listen="127.0.0.1:0", store_url="memory://")) as srv:
        address = f"127.0.0.1:{srv.port}"
        async with grpc.aio.insecure_channel(address) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            for i, port in enumerate((6001, 6002)):
                await stub.RegisterInstance(registry_pb2.RegisterInstanceRequest(
                    app_id="order-processor",
                    instance=registry_pb2.AppInstance(instance_id=f"op-{i}",
                                                      address=f"127.0.0.1:{port}")))
        resolver = AppResolver(RegistryConnection(address), caller_app_id="checkout")
        picks = [await resolver.next_address("order-processor") for _ in range(4)]
    assert sorted(picks[:2]) == ["127.0.0.1:6001", "127.0.0.1:6002"]
    assert picks[2:] == picks[:2]  # turn by turn


async def test_redis_registry_is_shared_and_leases_expire(redis_url: str) -> None:
    from fusebox.controlplane.server.engines.instance_registry import (
        RedisInstanceRegistry,
        RegisteredInstance,
    )

    now = [1000.0]
    a = RedisInstanceRegistry(redis_url, clock=lambda: now[0])
    b = RedisInstanceRegistry(redis_url, clock=lambda: now[0])  # another replica
    try:
        await a.register("default", "op", RegisteredInstance("op-1", "127.0.0.1:6001"), ttl=10)
        await a.register("default", "op", RegisteredInstance("op-2", "127.0.0.1:6002"), ttl=30)
        assert [i.address for i in await b.resolve("default", "op")] == [
            "127.0.0.1:6001", "127.0.0.1:6002"]
        now[0] += 15  # op-1's lease ran out (its sidecar died without deregistering)
        assert [i.instance_id for i in await b.resolve("default", "op")] == ["op-2"]
        assert await b.deregister("default", "op", "op-2")
        assert await a.resolve("default", "op") == []
        assert await a.resolve("other-namespace", "op") == []
    finally:
        await a.close()
        await b.close()
