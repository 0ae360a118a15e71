"""Sidecars find each other through the control plane; several instances take turns."""

from __future__ import annotations

import grpc

from agent._proto.fusebox.v1 import registry_pb2, registry_pb2_grpc
from controlplane.server import FuseboxServer, ServerConfig
from controlplane.sidecar._discovery import AppResolver, RegistryConnection


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
