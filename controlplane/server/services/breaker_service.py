"""BreakerService: list, inspect, watch and override cluster-wide breakers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, NoReturn

import grpc

from fusebox.agent.breaker import BreakerOverride
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import breaker_to_proto
from fusebox.agent.wire_enums import (
    CAUSE_TO_PB,
    OVERRIDE_FROM_PB,
    OVERRIDE_TO_PB,
    STATE_FROM_PB,
    STATE_TO_PB,
)
from fusebox.controlplane.audit import AuditAction
from fusebox.controlplane.breakers.model import BreakerEvent, BreakerSnapshot
from fusebox.controlplane.breakers.store import BreakerStore
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.security.identity import principal
from fusebox.controlplane.server.services.audit_recorder import AuditRecorder, breaker_entry
from fusebox.controlplane.server.wire_time import timestamp
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc

log = logging.getLogger("fusebox.server.breakers")

RECENT_TRANSITIONS = 20
WATCH_BLOCK_SECONDS = 1.0
WATCH_BACKLOG = 256  # events read for one watcher and not yet sent
WATCH_STALL_SECONDS = 10.0  # how long a full backlog may wait for the client to read


def transition_to_proto(event: BreakerEvent) -> breaker_pb2.BreakerTransition:
    return breaker_pb2.BreakerTransition(
        from_state=STATE_TO_PB[event.from_state],
        to_state=STATE_TO_PB[event.to_state],
        cause=CAUSE_TO_PB[event.cause],
        time=timestamp(event.at),
        generation=event.generation,
        instance_id=event.instance_id,
        detail=event.detail,
    )


def breaker_to_pb(
    snapshot: BreakerSnapshot, recent: list[BreakerEvent] | None = None
) -> breaker_pb2.Breaker:
    c = snapshot.counts
    message = breaker_pb2.Breaker(
        key=snapshot.key.to_proto(),
        display_name=snapshot.key.display_name,
        state=STATE_TO_PB[snapshot.state],
        counts=breaker_pb2.BreakerCounts(
            requests=c.requests, total_successes=c.total_successes,
            total_failures=c.total_failures, consecutive_successes=c.consecutive_successes,
            consecutive_failures=c.consecutive_failures,
        ),
        generation=snapshot.generation,
        policy=breaker_to_proto(snapshot.policy),
        recent_transitions=[transition_to_proto(e) for e in recent or []],
        active_leases=snapshot.active_leases,
        failing_instances=snapshot.failing_instances,
        failing_instance_count=snapshot.failing_instance_count,
        reporting_instance_count=snapshot.reporting_instance_count,
    )
    if snapshot.open_until is not None:
        message.open_until.CopyFrom(timestamp(snapshot.open_until))
    if snapshot.override is not None:
        o = snapshot.override
        message.override.CopyFrom(breaker_pb2.OverrideInfo(
            override=OVERRIDE_TO_PB[o.override], reason=o.reason, set_by=o.set_by,
        ))
        if o.expires_at is not None:
            message.override.expire_time.CopyFrom(timestamp(o.expires_at))
    return message


async def _abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode,
                 message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


class BreakerService(breaker_pb2_grpc.BreakerServiceServicer):
    def __init__(self, store: BreakerStore, audit: AuditRecorder | None = None,
                 watch_backlog: int | None = None, watch_stall: float | None = None) -> None:
        self._store = store
        self._watch_backlog = WATCH_BACKLOG if watch_backlog is None else watch_backlog
        self._watch_stall = WATCH_STALL_SECONDS if watch_stall is None else watch_stall
        self._audit = audit if audit is not None else AuditRecorder(None)

    async def _key(self, context: grpc.aio.ServicerContext[Any, Any],
                   key: Any) -> BreakerKey:
        try:
            return BreakerKey.from_proto(key)
        except ValueError as e:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"key: {e}")

    async def _snapshot(self, context: grpc.aio.ServicerContext[Any, Any],
                        key: BreakerKey) -> BreakerSnapshot:
        snapshot = await self._store.get(key)
        if snapshot is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND,
                         f"no breaker {key.display_name} ({key.encode()}): breakers exist once "
                         "an agent has reported outcomes for them")
        return snapshot

    async def ListBreakers(self, request: breaker_pb2.ListBreakersRequest,
                           context: grpc.aio.ServicerContext[Any, Any]
                           ) -> breaker_pb2.ListBreakersResponse:
        try:
            snapshots = await self._store.list(
                namespace=request.namespace, target=request.app_id,
                state=STATE_FROM_PB.get(request.state),
            )
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        return breaker_pb2.ListBreakersResponse(breakers=[breaker_to_pb(s) for s in snapshots])

    async def GetBreaker(self, request: breaker_pb2.GetBreakerRequest,
                         context: grpc.aio.ServicerContext[Any, Any]
                         ) -> breaker_pb2.GetBreakerResponse:
        key = await self._key(context, request.key)
        try:
            snapshot = await self._snapshot(context, key)
            recent = await self._store.recent_events(key, RECENT_TRANSITIONS)
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        return breaker_pb2.GetBreakerResponse(breaker=breaker_to_pb(snapshot, recent))

    async def SetOverride(self, request: breaker_pb2.SetOverrideRequest,
                          context: grpc.aio.ServicerContext[Any, Any]
                          ) -> breaker_pb2.SetOverrideResponse:
        key = await self._key(context, request.key)
        override: BreakerOverride | None = OVERRIDE_FROM_PB.get(request.override)
        if request.override not in OVERRIDE_FROM_PB:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"override: unknown value {request.override}")
        if override is not None and not request.reason.strip():
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "reason: required when setting an override")
        ttl = request.ttl.ToNanoseconds() / 1e9 if request.HasField("ttl") else 0.0
        if ttl < 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "ttl: must not be negative")
        try:
            previous = await self._snapshot(context, key)
            snapshot = await self._store.set_override(
                key, override, reason=request.reason, ttl=ttl or None, set_by=principal(context),
            )
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        log_event(log, logging.WARNING if override else logging.INFO,
                  "breaker override set" if override else "breaker override cleared",
                  breaker=key.display_name, override=override.value if override else "none",
                  reason=request.reason, ttl=ttl or None, by=principal(context))
        detail = f"reason: {request.reason}" if request.reason else ""
        if ttl:
            detail += f"{'; ' if detail else ''}ttl {ttl:g}s"
        await self._audit.record(breaker_entry(
            principal(context), AuditAction.BREAKER_OVERRIDE, key, previous, snapshot, detail,
        ))
        return breaker_pb2.SetOverrideResponse(breaker=breaker_to_pb(snapshot))

    async def ResetBreaker(self, request: breaker_pb2.ResetBreakerRequest,
                           context: grpc.aio.ServicerContext[Any, Any]
                           ) -> breaker_pb2.ResetBreakerResponse:
        key = await self._key(context, request.key)
        try:
            previous = await self._snapshot(context, key)
            snapshot = await self._store.reset(
                key, reason=request.reason, set_by=principal(context)
            )
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        log_event(log, logging.WARNING, "breaker reset", breaker=key.display_name,
                  reason=request.reason, by=principal(context))
        await self._audit.record(breaker_entry(
            principal(context), AuditAction.BREAKER_RESET, key, previous, snapshot,
            f"reason: {request.reason}" if request.reason else "",
        ))
        return breaker_pb2.ResetBreakerResponse(breaker=breaker_to_pb(snapshot))

    async def WatchBreakers(self, request: breaker_pb2.WatchBreakersRequest,
                            context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Snapshot, then live events, written with ``context.write``.

        A client that does not read must not make the server hold ever more
        events for it: events read from the store wait in a queue of at most
        ``watch_backlog`` messages (the store is read no faster than they are
        sent). When the queue stays full for ``watch_stall`` seconds the watch
        is ended with RESOURCE_EXHAUSTED; the client may resume from the last
        revision it got.
        """
        def wanted(key: BreakerKey) -> bool:
            return ((not request.namespace or key.namespace == request.namespace)
                    and (not request.app_id or key.target == request.app_id))

        backlog: asyncio.Queue[breaker_pb2.WatchBreakersResponse] = asyncio.Queue(
            self._watch_backlog
        )
        overflow = asyncio.Event()

        async def follow(position: str) -> None:
            while True:
                position, events = await self._store.read_events(
                    position, block=WATCH_BLOCK_SECONDS, count=self._watch_backlog
                )
                for event in events:
                    if not wanted(event.key):
                        continue
                    current = await self._store.get(event.key)
                    breaker = (breaker_to_pb(current) if current is not None
                               else breaker_pb2.Breaker(key=event.key.to_proto()))
                    message = breaker_pb2.WatchBreakersResponse(
                        revision=event.stream_id or position, breaker=breaker,
                        transition=transition_to_proto(event),
                    )
                    try:
                        await asyncio.wait_for(backlog.put(message), self._watch_stall)
                    except TimeoutError:
                        overflow.set()
                        return

        follower: asyncio.Task[None] | None = None
        sent = request.from_revision
        try:
            position = request.from_revision
            snapshots: list[BreakerSnapshot] = []
            if not position:
                # Snapshot first, from a stream position taken before it: no gap.
                position, _ = await self._store.read_events("", block=0.0)
                snapshots = await self._store.list(
                    namespace=request.namespace, target=request.app_id
                )
            follower = asyncio.create_task(follow(position))
            for snapshot in snapshots:
                if not await _write_unless(context, breaker_pb2.WatchBreakersResponse(
                    revision=position, snapshot=True, breaker=breaker_to_pb(snapshot)
                ), overflow):
                    break
            sent = position
            while not overflow.is_set():
                waiting = asyncio.ensure_future(backlog.get())
                await asyncio.wait({waiting, follower}, return_when=asyncio.FIRST_COMPLETED)
                if not waiting.done():
                    waiting.cancel()
                    follower.result()  # StoreUnavailable, or overflow (loop ends)
                    continue
                message = waiting.result()
                if not await _write_unless(context, message, overflow):
                    break
                sent = message.revision
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE,
                         f"breaker store unavailable: {e}; resume with from_revision")
        finally:
            if follower is not None:
                follower.cancel()
        log_event(log, logging.WARNING, "slow breaker watcher disconnected",
                  peer=context.peer(), backlog=self._watch_backlog)
        await _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"watch backlog: {self._watch_backlog} events waited more than "
                     f"{self._watch_stall:g}s for this client to read; resume with "
                     f"from_revision={sent!r}")


async def _write_unless(context: grpc.aio.ServicerContext[Any, Any],
                        message: breaker_pb2.WatchBreakersResponse,
                        overflow: asyncio.Event) -> bool:
    """Write ``message``; False (write abandoned) if ``overflow`` is set first."""
    write = asyncio.ensure_future(context.write(message))
    overflowed = asyncio.ensure_future(overflow.wait())
    await asyncio.wait({write, overflowed}, return_when=asyncio.FIRST_COMPLETED)
    overflowed.cancel()
    if write.done():
        write.result()
        return True
    write.cancel()
    return False
