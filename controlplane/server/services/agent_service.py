"""AgentService.Connect: the xDS-like stream that keeps agents' policies current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.wire_enums import STATE_TO_PB
from fusebox.controlplane.server.engines.breaker_hub import (
    BreakerHub,
    ReportError,
    ReportRateExceeded,
)
from fusebox.controlplane.server.engines.breaker_policy import breaker_policy_for
from fusebox.controlplane.server.engines.budget_hub import BudgetHub
from fusebox.controlplane.server.engines.policy_hub import PolicyHub
from fusebox.controlplane.server.engines.sessions import AgentSession
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.spec.model import DEFAULT_NAMESPACE
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import agent_pb2, agent_pb2_grpc

log = logging.getLogger("fusebox.server.agents")

HELLO_DEADLINE = 10.0  # seconds a new stream has to say hello


class MalformedMessage(ReportError):
    """A message on the stream that is not a ConnectRequest (INVALID_ARGUMENT)."""


class AgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self, hub: PolicyHub, breakers: BreakerHub, lease_ttl: float = 2.0,
                 budgets: BudgetHub | None = None) -> None:
        self._hub = hub
        self._breakers = breakers
        self._budgets = budgets
        self._lease_ttl = lease_ttl

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[agent_pb2.ConnectResponse | bytes]:
        requests = aiter(request_iterator)
        try:
            first = await asyncio.wait_for(anext(requests), HELLO_DEADLINE)
        except (TimeoutError, StopAsyncIteration, DecodeError):
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
            snapshot = await self._hub.snapshot(session.namespace, session.app_id)
        except StoreUnavailable as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"spec store unavailable: {e}")
            return
        # Always a full snapshot on (re)connect: it is small, and it tells an
        # agent resuming from its cache that what it holds is current.
        session.offer_snapshot(snapshot)
        self._hub.register(session)
        if self._budgets is not None:
            self._budgets.session_started(session)  # its first shares follow the snapshot
        log_event(log, logging.INFO, "agent connected", namespace=session.namespace,
                  app_id=session.app_id, instance_id=session.instance_id, peer=session.peer)
        if not self._breakers.available:
            session.offer_control(agent_pb2.ConnectResponse(mode=agent_pb2.ModeChange(
                mode=agent_pb2.BREAKER_MODE_LOCAL, reason="breaker store unavailable")))
        reader = asyncio.create_task(self._read(requests, session, context))
        try:
            while (message := await session.next_message()) is not None:
                yield message
            refusal = reader.result() if reader.done() and not reader.cancelled() else None
            if isinstance(refusal, ReportRateExceeded):
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(refusal))
            if isinstance(refusal, MalformedMessage):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(refusal))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._hub.unregister(session)
            self._breakers.drop_session(session)
            if self._budgets is not None:
                self._budgets.drop_session(session)
            log_event(log, logging.INFO, "agent disconnected", namespace=session.namespace,
                      app_id=session.app_id, instance_id=session.instance_id)

    async def _read(
        self,
        requests: AsyncIterator[agent_pb2.ConnectRequest],
        session: AgentSession,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ReportError | None:
        """Handle the agent's messages; the ``ReportError`` that closed the stream, if any."""
        try:
            async for request in requests:
                kind = request.WhichOneof("message")
                if kind == "report":
                    self._breakers.ingest(session, request.report)
                    if self._budgets is not None:
                        self._budgets.ingest(session, request.report)
                elif kind == "breaker_acks":
                    self._breakers.acked(session, request.breaker_acks)
                elif kind == "interest":
                    await self._on_interest(session, request.interest)
                elif kind == "policy_ack":
                    self._on_ack(session, request.policy_ack)
                elif kind == "hello":
                    log_event(log, logging.WARNING, "duplicate hello ignored",
                              instance_id=session.instance_id)
        except ReportError as e:
            log_event(log, logging.WARNING, "agent stream closed: report out of bounds",
                      instance_id=session.instance_id, error=str(e))
            return e
        except DecodeError as e:
            log_event(log, logging.WARNING, "agent stream closed: malformed message",
                      instance_id=session.instance_id, error=str(e))
            return MalformedMessage(f"malformed message on the Connect stream: {e}")
        except grpc.aio.AioRpcError:
            pass  # the agent went away
        finally:
            session.close()
        return None

    async def _on_interest(
        self, session: AgentSession, interest: agent_pb2.BreakerInterest
    ) -> None:
        if interest.acks_updates:
            session.acks_updates = True
        added = []
        for key in interest.add:
            try:
                added.append(BreakerKey.from_proto(key))
            except ValueError as e:
                log_event(log, logging.DEBUG, "invalid breaker key in interest",
                          instance_id=session.instance_id, error=str(e))
        removed = []
        for key in interest.remove:
            with contextlib.suppress(ValueError):
                removed.append(BreakerKey.from_proto(key))
        self._breakers.remove_interest(session, removed)
        new = self._breakers.add_interest(session, added)
        if new and self._breakers.available:
            with contextlib.suppress(StoreUnavailable):
                await self._breakers.send_current_state(session, new)

    async def AcquireProbeLease(
        self,
        request: agent_pb2.AcquireProbeLeaseRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> agent_pb2.AcquireProbeLeaseResponse:
        session = self._hub.find(request.instance_id)
        if session is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"instance_id: {request.instance_id!r} has no Connect stream "
                                "open on this server")
        assert session is not None
        try:
            key = BreakerKey.from_proto(request.key)
        except ValueError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"key: {e}")
            raise
        policy = breaker_policy_for(session.policies, key)
        if policy is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"key: app {session.app_id!r} holds no circuit breaker policy "
                                f"for {key.display_name} (spec {key.namespace}/{key.spec})")
        assert policy is not None
        try:
            grant = await self._breakers.store.acquire_lease(
                key, policy, session.instance_id, self._lease_ttl
            )
        except StoreUnavailable as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
            raise
        ttl = duration_pb2.Duration()
        ttl.FromNanoseconds(int(self._lease_ttl * 1e9))
        return agent_pb2.AcquireProbeLeaseResponse(
            granted=grant.granted, lease_id=grant.lease_id, ttl=ttl,
            state=STATE_TO_PB[grant.state], generation=grant.generation,
        )

    def _on_ack(self, session: AgentSession, ack: agent_pb2.PolicyAck) -> None:
        self._hub.acked(session, ack.digest, ack.accepted)
        if ack.accepted:
            session.acked_digest = ack.digest
            log_event(log, logging.DEBUG, "policies acked", app_id=session.app_id,
                      instance_id=session.instance_id, digest=ack.digest)
        else:
            log_event(log, logging.WARNING, "policies rejected by agent", app_id=session.app_id,
                      instance_id=session.instance_id, digest=ack.digest, error=ack.error)
