"""AgentService.Connect: the xDS-like stream that keeps agents' policies current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc

from agent._proto.fusebox.v1 import agent_pb2, agent_pb2_grpc
from controlplane.server.logs import log_event
from controlplane.server.policy_hub import AgentSession, PolicyHub
from controlplane.spec.model import DEFAULT_NAMESPACE
from controlplane.store.base import StoreUnavailable

log = logging.getLogger("fusebox.server.agents")

HELLO_DEADLINE = 10.0  # seconds a new stream has to say hello


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, hub: PolicyHub) -> None:
        self._hub = hub

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[agent_pb2.ConnectResponse]:
        requests = aiter(request_iterator)
        try:
            first = await asyncio.wait_for(anext(requests), HELLO_DEADLINE)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message on Connect must be a hello")
            return
        if first.WhichOneof("message") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "the first message on Connect must be a hello, "
                                f"got {first.WhichOneof('message')}")
            return
        hello = first.hello
        if not hello.app_id or not hello.instance_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "hello: app_id and instance_id are required")
            return
        session = AgentSession(hello.namespace or DEFAULT_NAMESPACE, hello.app_id,
                               hello.instance_id, context.peer())
        try:
            policies, store_revision = await self._hub.resolve(session.namespace, session.app_id)
        except StoreUnavailable as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"spec store unavailable: {e}")
            return
        # Always a full snapshot on (re)connect: it is small, and it tells an
        # agent resuming from its cache that what it holds is current.
        session.offer_snapshot(policies, store_revision)
        self._hub.register(session)
        log_event(log, logging.INFO, "agent connected", namespace=session.namespace,
                  app_id=session.app_id, instance_id=session.instance_id, peer=session.peer)
        reader = asyncio.create_task(self._read(requests, session))
        try:
            while (message := await session.next_message()) is not None:
                yield message
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._hub.unregister(session)
            log_event(log, logging.INFO, "agent disconnected", namespace=session.namespace,
                      app_id=session.app_id, instance_id=session.instance_id)

    async def _read(
        self, requests: AsyncIterator[agent_pb2.ConnectRequest], session: AgentSession
    ) -> None:
        try:
            async for request in requests:
                kind = request.WhichOneof("message")
                if kind == "policy_ack":
                    self._on_ack(session, request.policy_ack)
                elif kind == "hello":
                    log_event(log, logging.WARNING, "duplicate hello ignored",
                              instance_id=session.instance_id)
                # Reports and interest belong to cluster-wide breakers (issue 4).
        except grpc.aio.AioRpcError:
            pass  # the agent went away
        finally:
            session.close()

    def _on_ack(self, session: AgentSession, ack: agent_pb2.PolicyAck) -> None:
        if ack.accepted:
            session.acked_digest = ack.digest
            log_event(log, logging.DEBUG, "policies acked", app_id=session.app_id,
                      instance_id=session.instance_id, digest=ack.digest)
        else:
            log_event(log, logging.WARNING, "policies rejected by agent", app_id=session.app_id,
                      instance_id=session.instance_id, digest=ack.digest, error=ack.error)
