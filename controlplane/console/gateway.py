"""``ConsoleGateway``: the console's RPCs, made in-process on the gRPC server's servicers.

No second implementation of anything: the gateway takes the method handlers
the generated ``add_*Servicer_to_server`` functions build for the gRPC server
(the very servicer instances, with their request types), wraps each with the
auth interceptor's own ``guarded`` (token, role, identity for the audit
record), and runs it with a ``ConsoleContext``. A page's SetOverride is
therefore the CLI's SetOverride: same checks, same errors, same audit record.

Only the methods of ``CONSOLE_METHODS`` are reachable (docs/console.md lists
them); ``ApplySpec`` and ``DeleteSpec`` are not served yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from fusebox.controlplane.console.context import ConsoleContext
from fusebox.controlplane.server.security.auth import AuthInterceptor, Identity, guarded
from fusebox.controlplane.server.services.audit_service import AuditService
from fusebox.controlplane.server.services.breaker_service import BreakerService
from fusebox.controlplane.server.services.spec_service import SpecService
from fusebox.v1 import audit_pb2_grpc, breaker_pb2_grpc, spec_pb2_grpc

_SPEC = "fusebox.v1.SpecService/"
_BREAKER = "fusebox.v1.BreakerService/"
_AUDIT = "fusebox.v1.AuditService/"

#: The unary RPCs a page may call, as ``package.Service/Method`` (its URL path).
CONSOLE_METHODS = frozenset({
    _SPEC + "GetSpec", _SPEC + "ListSpecs", _SPEC + "ListSpecRevisions",
    _SPEC + "ResolvePolicies", _SPEC + "RollbackSpec",
    _BREAKER + "ListBreakers", _BREAKER + "GetBreaker",
    _BREAKER + "SetOverride", _BREAKER + "ResetBreaker",
    _AUDIT + "ListAuditEvents",
})
#: The live feed's RPC (served as server-sent events, ``feed.py``).
WATCH_METHOD = _BREAKER + "WatchBreakers"


class _HandlerCollector:
    """Takes the place of a ``grpc.aio.Server`` for ``add_*Servicer_to_server``."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        """The same handlers come through ``add_registered_method_handlers``."""

    def add_registered_method_handlers(self, service: str,
                                       handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        for name, handler in handlers.items():
            self.handlers[f"{service}/{name}"] = handler


class ConsoleGateway:
    """Calls the console's RPCs on the server's own servicers, through its auth check."""

    def __init__(self, auth: AuthInterceptor, *, specs: SpecService,
                 breakers: BreakerService, audit: AuditService) -> None:
        self.breakers = breakers  # the live feed follows its events (shared_feed.py)
        collector = _HandlerCollector()
        spec_pb2_grpc.add_SpecServiceServicer_to_server(specs, collector)
        breaker_pb2_grpc.add_BreakerServiceServicer_to_server(breakers, collector)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(audit, collector)
        self._auth = auth
        self._handlers = {
            method: guarded(collector.handlers[method], f"/{method}", auth)
            for method in (*CONSOLE_METHODS, WATCH_METHOD)
        }

    @staticmethod
    def request_type(method: str) -> type[Message]:
        """The request message class of ``package.Service/Method``."""
        service, _, name = method.partition("/")
        descriptor = descriptor_pool.Default().FindServiceByName(service)
        message_class: type[Message] = message_factory.GetMessageClass(
            descriptor.methods_by_name[name].input_type
        )
        return message_class

    async def call(self, method: str, request: Message, context: ConsoleContext) -> Message:
        """One unary RPC of ``CONSOLE_METHODS``; ``RpcAborted`` when it fails.

        It runs in a task of its own, as a gRPC call does: the caller's
        identity stays private to it, and a page that goes away mid-call
        (the HTTP handler is cancelled) does not cut an action in half.
        """
        assert method in CONSOLE_METHODS, method
        unary: Callable[[Message, ConsoleContext], Any] = self._handlers[method].unary_unary
        call = asyncio.ensure_future(unary(request, context))
        response: Message = await asyncio.shield(call)
        return response

    async def watch(self, request: Message, context: ConsoleContext) -> None:
        """WatchBreakers until it ends; its messages go to ``context.write``."""
        stream: Callable[[Message, ConsoleContext], Any] = (
            self._handlers[WATCH_METHOD].unary_stream
        )
        async for _ in stream(request, context):
            pass  # the servicer writes through the context and yields nothing

    async def identify(self, context: ConsoleContext) -> Identity:
        """Who the bearer is, as the interceptor decides it (``RpcAborted`` if nobody)."""
        return await self._auth.identify(context)
