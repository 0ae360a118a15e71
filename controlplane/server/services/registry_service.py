"""RegistryService: sidecars register app-id -> address leases; callers resolve them.

See ``protos/fusebox/v1/registry.proto`` and docs/sidecar.md. The agent role
may register only as its own apps, and resolve any app of its namespace when
it names one of its own apps as the caller (``fusebox.controlplane.server.security.auth``).
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn, TypeAlias

import grpc

from fusebox.controlplane.server.engines.instance_registry import (
    InstanceRegistry,
    RegisteredInstance,
)
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.spec.model import DEFAULT_NAMESPACE
from fusebox.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger("fusebox.server.registry")

DEFAULT_TTL = 10.0
MIN_TTL = 1.0
MAX_TTL = 300.0
MAX_FIELD = 256  # app ids, instance ids and addresses are short; refuse anything else
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


async def _invalid(context: Context, message: str) -> NoReturn:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
    raise AssertionError("abort returned")  # pragma: no cover


async def _check_name(context: Context, field: str, value: str) -> None:
    if not value or len(value) > MAX_FIELD:
        await _invalid(context, f"{field}: required, at most {MAX_FIELD} characters")


async def _check_address(context: Context, address: str) -> None:
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 < int(port) < 65536:
        await _invalid(context, f"instance.address: expected HOST:PORT, got {address!r}")


class RegistryService(registry_pb2_grpc.RegistryServiceServicer):
    """The gRPC face of an ``InstanceRegistry``."""

    def __init__(self, registry: InstanceRegistry) -> None:
        self._registry = registry

    async def RegisterInstance(
        self, request: registry_pb2.RegisterInstanceRequest, context: Context
    ) -> registry_pb2.RegisterInstanceResponse:
        await _check_name(context, "app_id", request.app_id)
        await _check_name(context, "instance.instance_id", request.instance.instance_id)
        await _check_address(context, request.instance.address)
        ttl = DEFAULT_TTL
        if request.HasField("ttl"):
            ttl = min(MAX_TTL, max(MIN_TTL, request.ttl.ToTimedelta().total_seconds()))
        namespace = request.namespace or DEFAULT_NAMESPACE
        instance = RegisteredInstance(request.instance.instance_id, request.instance.address)
        await self._registry.register(namespace, request.app_id, instance, ttl)
        log_event(log, logging.DEBUG, "instance registered", app_id=request.app_id,
                  namespace=namespace, instance_id=instance.instance_id, address=instance.address)
        response = registry_pb2.RegisterInstanceResponse()
        response.ttl.FromNanoseconds(int(ttl * 1e9))
        return response

    async def DeregisterInstance(
        self, request: registry_pb2.DeregisterInstanceRequest, context: Context
    ) -> registry_pb2.DeregisterInstanceResponse:
        await _check_name(context, "app_id", request.app_id)
        await _check_name(context, "instance_id", request.instance_id)
        namespace = request.namespace or DEFAULT_NAMESPACE
        removed = await self._registry.deregister(namespace, request.app_id, request.instance_id)
        log_event(log, logging.DEBUG, "instance deregistered", app_id=request.app_id,
                  namespace=namespace, instance_id=request.instance_id, removed=removed)
        return registry_pb2.DeregisterInstanceResponse(removed=removed)

    async def ResolveApp(
        self, request: registry_pb2.ResolveAppRequest, context: Context
    ) -> registry_pb2.ResolveAppResponse:
        await _check_name(context, "app_id", request.app_id)
        instances = await self._registry.resolve(request.namespace or DEFAULT_NAMESPACE,
                                                 request.app_id)
        return registry_pb2.ResolveAppResponse(instances=[
            registry_pb2.AppInstance(instance_id=i.instance_id, address=i.address)
            for i in instances
        ])
