"""AuditService: read the audit log (who changed which spec or breaker, and how)."""

from __future__ import annotations

from typing import Any

import grpc

from fusebox.controlplane.audit import AuditEvent, AuditQuery, AuditStore
from fusebox.controlplane.audit.model import MAX_LIST_LIMIT
from fusebox.controlplane.server.wire_time import timestamp
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.controlplane.wire_enums import (
    AUDIT_ACTION_FROM_PB,
    AUDIT_ACTION_TO_PB,
    AUDIT_TARGET_KIND_FROM_PB,
    AUDIT_TARGET_KIND_TO_PB,
)
from fusebox.v1 import audit_pb2, audit_pb2_grpc

__all__ = ["AuditService", "event_to_proto"]


def event_to_proto(event: AuditEvent) -> audit_pb2.AuditEvent:
    e = event.entry
    return audit_pb2.AuditEvent(
        id=event.id, time=timestamp(event.time), actor=e.actor, action=AUDIT_ACTION_TO_PB[e.action],
        target_kind=AUDIT_TARGET_KIND_TO_PB[e.target_kind], namespace=e.namespace, target=e.target,
        target_key=e.target_key, previous=e.previous, current=e.current, detail=e.detail,
    )


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def ListAuditEvents(
        self, request: audit_pb2.ListAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> audit_pb2.ListAuditEventsResponse:
        problem = _request_problem(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        query = AuditQuery(
            since=request.since.ToNanoseconds() / 1e9 if request.HasField("since") else None,
            limit=request.limit,
            target_kind=AUDIT_TARGET_KIND_FROM_PB.get(request.target_kind),
            namespace=request.namespace,
            target_contains=request.target_contains,
            actions=frozenset(AUDIT_ACTION_FROM_PB[a] for a in request.actions),
        )
        try:
            events = await self._store.list(query)
        except StoreUnavailable as e:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"audit store unavailable: {e}")
            raise
        return audit_pb2.ListAuditEventsResponse(events=[event_to_proto(e) for e in events])


def _request_problem(request: audit_pb2.ListAuditEventsRequest) -> str:
    if request.limit > MAX_LIST_LIMIT:
        return f"limit: at most {MAX_LIST_LIMIT} events per request, got {request.limit}"
    if request.target_kind and request.target_kind not in AUDIT_TARGET_KIND_FROM_PB:
        return f"target_kind: unknown value {request.target_kind}"
    unknown = [a for a in request.actions if a not in AUDIT_ACTION_FROM_PB]
    if unknown:
        return f"actions: unknown values {unknown}"
    return ""
