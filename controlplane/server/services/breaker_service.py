"""BreakerService: list, inspect, watch and override cluster-wide breakers.

Overrides may be set ahead of use: on a breaker no agent has used yet (it is
created with the policy the stored specs bind it to) and on every breaker of a
target, existing and future (``all_methods``). docs/breaker-state.md has the design.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, NoReturn

import grpc

from fusebox.agent.breaker import BreakerOverride
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy, breaker_to_proto
from fusebox.agent.wire_enums import (
    CAUSE_TO_PB,
    OVERRIDE_FROM_PB,
    OVERRIDE_TO_PB,
    STATE_FROM_PB,
    STATE_TO_PB,
)
from fusebox.controlplane.audit import AuditAction
from fusebox.controlplane.breakers.model import (
    BreakerEvent,
    BreakerNotFound,
    BreakerSnapshot,
    BreakerTarget,
    OverrideInfo,
    TargetOverride,
)
from fusebox.controlplane.breakers.store import BreakerStore
from fusebox.controlplane.server.engines.breaker_policy import (
    stored_breaker_policy,
    stored_target_policy,
    unbound_reason,
)
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.security.identity import principal
from fusebox.controlplane.server.services.audit_recorder import (
    AuditRecorder,
    breaker_entry,
    target_override_entry,
)
from fusebox.controlplane.server.wire_time import timestamp
from fusebox.controlplane.spec.model import ResiliencySpec
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc

log = logging.getLogger("fusebox.server.breakers")

RECENT_TRANSITIONS = 20
WATCH_BLOCK_SECONDS = 1.0
WATCH_BACKLOG = 256  # events read for one watcher and not yet sent
WATCH_STALL_SECONDS = 10.0  # how long a full backlog may wait for the client to read

#: The specs stored in a namespace (``PolicyHub.specs``): where an override ahead
#: of use finds the breaker's policy.
SpecSource = Callable[[str], Awaitable[Sequence[ResiliencySpec]]]


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
        message.override.CopyFrom(override_info_to_pb(snapshot.override))
    return message


def override_info_to_pb(info: OverrideInfo) -> breaker_pb2.OverrideInfo:
    message = breaker_pb2.OverrideInfo(
        override=OVERRIDE_TO_PB[info.override], reason=info.reason, set_by=info.set_by,
    )
    if info.expires_at is not None:
        message.expire_time.CopyFrom(timestamp(info.expires_at))
    return message


def target_override_to_pb(rule: TargetOverride) -> breaker_pb2.TargetOverride:
    return breaker_pb2.TargetOverride(
        target=rule.target.to_proto(), override=override_info_to_pb(rule.info)
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode,
                 message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


class BreakerService(breaker_pb2_grpc.BreakerServiceServicer):
    """``specs``: where overrides ahead of use find policies; without it, a breaker
    that has no state cannot be overridden (NOT_FOUND) and neither can a target
    that has no breaker."""

    def __init__(self, store: BreakerStore, audit: AuditRecorder | None = None,
                 watch_backlog: int | None = None, watch_stall: float | None = None,
                 *, specs: SpecSource | None = None) -> None:
        self._store = store
        self._watch_backlog = WATCH_BACKLOG if watch_backlog is None else watch_backlog
        self._watch_stall = WATCH_STALL_SECONDS if watch_stall is None else watch_stall
        self._audit = audit if audit is not None else AuditRecorder(None)
        self._specs = specs

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
            await _abort(context, grpc.StatusCode.NOT_FOUND, _not_found(key))
        return snapshot

    async def _stored_policy(
        self, context: grpc.aio.ServicerContext[Any, Any], target: BreakerTarget,
        key: BreakerKey | None = None,
    ) -> CircuitBreakerPolicy:
        """The policy stored specs bind ``key`` (or some breaker of ``target``) to;
        aborts NOT_FOUND (no such spec) or FAILED_PRECONDITION (it binds none)."""
        if self._specs is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND,
                         _not_found(key) if key is not None else f"no circuit breaker of {target}")
        specs = await self._specs(target.namespace)
        policy = (stored_breaker_policy(specs, key) if key is not None
                  else stored_target_policy(specs, target))
        if policy is None:
            stored, why = unbound_reason(specs, target)
            code = grpc.StatusCode.FAILED_PRECONDITION if stored else grpc.StatusCode.NOT_FOUND
            await _abort(context, code, why)
        return policy

    async def ListBreakers(self, request: breaker_pb2.ListBreakersRequest,
                           context: grpc.aio.ServicerContext[Any, Any]
                           ) -> breaker_pb2.ListBreakersResponse:
        try:
            snapshots = await self._store.list(
                namespace=request.namespace, target=request.app_id,
                state=STATE_FROM_PB.get(request.state),
            )
            rules = await self._store.target_overrides(
                namespace=request.namespace, target=request.app_id
            )
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        return breaker_pb2.ListBreakersResponse(
            breakers=[breaker_to_pb(s) for s in snapshots],
            target_overrides=[target_override_to_pb(r) for r in rules],
        )

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
        if request.all_methods:
            return await self._set_target_override(context, key, override, request.reason, ttl)
        try:
            previous = await self._store.get(key)
            policy = None
            if previous is None:
                if override is None:
                    await _abort(context, grpc.StatusCode.NOT_FOUND, _not_found(key))
                # An override ahead of use: the breaker is created with its stored policy.
                policy = await self._stored_policy(context, BreakerTarget.of(key), key)
            snapshot = await self._store.set_override(
                key, override, reason=request.reason, ttl=ttl or None, set_by=principal(context),
                policy=policy,
            )
        except BreakerNotFound:
            await _abort(context, grpc.StatusCode.NOT_FOUND, _not_found(key))
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        log_event(log, logging.WARNING if override else logging.INFO,
                  "breaker override set" if override else "breaker override cleared",
                  breaker=key.display_name, override=override.value if override else "none",
                  reason=request.reason, ttl=ttl or None, by=principal(context),
                  ahead_of_use=previous is None)
        detail = _override_detail(request.reason, ttl)
        if previous is None:
            detail += "; created ahead of use (no agent had used it)"
        await self._audit.record(breaker_entry(
            principal(context), AuditAction.BREAKER_OVERRIDE, key, previous, snapshot, detail,
        ))
        return breaker_pb2.SetOverrideResponse(breaker=breaker_to_pb(snapshot))

    async def _set_target_override(
        self, context: grpc.aio.ServicerContext[Any, Any], key: BreakerKey,
        override: BreakerOverride | None, reason: str, ttl: float,
    ) -> breaker_pb2.SetOverrideResponse:
        if key.method:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"key.method: must be empty with all_methods (the override covers every "
                         f"breaker of {key.kind.value} {key.target!r}), got {key.method!r}")
        target = BreakerTarget.of(key)
        try:
            before = [s for s in await self._store.list(namespace=target.namespace,
                                                        target=target.target)
                      if target.covers(s.key)]
            previous = await self._target_override(target)
            if override is not None and not before:
                await self._stored_policy(context, target)  # a target the specs bind, no typo
            after = await self._store.set_target_override(
                target, override, reason=reason, ttl=ttl or None, set_by=principal(context),
            )
            current = await self._target_override(target)
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        had = {s.key: s.override.override if s.override else None for s in before}
        changed = sum(
            1 for s in after if had.get(s.key) is not (s.override.override if s.override else None)
        )
        log_event(log, logging.WARNING if override else logging.INFO,
                  "target override set" if override else "target override cleared",
                  target=str(target), override=override.value if override else "none",
                  reason=reason, ttl=ttl or None, by=principal(context),
                  breakers=len(after), changed=changed)
        detail = _override_detail(reason, ttl)
        detail += f"{'; ' if detail else ''}every method: {changed} of {len(after)} existing " \
                  "breaker(s) changed"
        await self._audit.record(target_override_entry(
            principal(context), target, previous, current, detail,
        ))
        response = breaker_pb2.SetOverrideResponse(breakers=[breaker_to_pb(s) for s in after])
        if current is not None:
            response.target_override.CopyFrom(target_override_to_pb(current))
        return response

    async def _target_override(self, target: BreakerTarget) -> TargetOverride | None:
        rules = await self._store.target_overrides(
            namespace=target.namespace, target=target.target
        )
        return next((r for r in rules if r.target == target), None)

    async def ResetBreaker(self, request: breaker_pb2.ResetBreakerRequest,
                           context: grpc.aio.ServicerContext[Any, Any]
                           ) -> breaker_pb2.ResetBreakerResponse:
        key = await self._key(context, request.key)
        try:
            previous = await self._snapshot(context, key)
            snapshot = await self._store.reset(
                key, reason=request.reason, set_by=principal(context)
            )
        except BreakerNotFound:
            await _abort(context, grpc.StatusCode.NOT_FOUND, _not_found(key))
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"breaker store unavailable: {e}")
        log_event(log, logging.WARNING, "breaker reset", breaker=key.display_name,
                  reason=request.reason, by=principal(context))
        await self._audit.record(breaker_entry(
            principal(context), AuditAction.BREAKER_RESET, key, previous, snapshot,
            f"reason: {request.reason}" if request.reason else "",
        ))
        return breaker_pb2.ResetBreakerResponse(breaker=breaker_to_pb(snapshot))

    async def events_after(
        self, position: str, *, namespace: str = "", app_id: str = ""
    ) -> AsyncIterator[tuple[str, breaker_pb2.WatchBreakersResponse | None]]:
        """The live part of a watch: every event after ``position``, for ever.

        Yields ``(position, message)`` per event: the message (the breaker as it
        is now and the transition) when the event is in ``namespace``/``app_id``
        (empty: any), else None, so that a follower knows every position it
        passed, wanted or not. Raises ``StoreUnavailable``. ``WatchBreakers``
        and the console's shared feed (one per filter, many pages) both follow
        with this.
        """
        while True:
            batch_end, events = await self._store.read_events(
                position, block=WATCH_BLOCK_SECONDS, count=self._watch_backlog
            )
            for event in events:
                position = event.position or batch_end
                if ((namespace and event.key.namespace != namespace)
                        or (app_id and event.key.target != app_id)):
                    yield position, None
                    continue
                current = await self._store.get(event.key)
                breaker = (breaker_to_pb(current) if current is not None
                           else breaker_pb2.Breaker(key=event.key.to_proto()))
                yield position, breaker_pb2.WatchBreakersResponse(
                    revision=position, breaker=breaker, transition=transition_to_proto(event),
                )
            position = batch_end

    async def WatchBreakers(self, request: breaker_pb2.WatchBreakersRequest,
                            context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Snapshot, then live events, written with ``context.write``.

        A client that does not read must not make the server hold ever more
        events for it: events read from the store wait in a queue of at most
        ``watch_backlog`` messages (the store is read no faster than they are
        sent). When the queue stays full for ``watch_stall`` seconds the watch
        is ended with RESOURCE_EXHAUSTED; the client may resume from the last
        revision it got.

        A ``from_revision`` the store cannot resume from (``resumable``: a
        restarted embedded store, trimmed events, a foreign position) gets a
        fresh snapshot instead, never a silent gap. With ``mark_synced`` a
        breaker-less ``synced`` message says when the client's view is current.
        """
        backlog: asyncio.Queue[breaker_pb2.WatchBreakersResponse] = asyncio.Queue(
            self._watch_backlog
        )
        overflow = asyncio.Event()

        async def follow(position: str) -> None:
            async for _, message in self.events_after(position, namespace=request.namespace,
                                                      app_id=request.app_id):
                if message is not None:
                    if not backlog.full():  # the usual case: no timer, no task
                        backlog.put_nowait(message)
                        continue
                    try:
                        await asyncio.wait_for(backlog.put(message), self._watch_stall)
                    except TimeoutError:
                        overflow.set()
                        return

        follower: asyncio.Task[None] | None = None
        sent = request.from_revision
        try:
            position = request.from_revision
            if position and not await self._store.resumable(position):
                # A restarted store, trimmed events, a position from elsewhere:
                # resuming would miss transitions, so the client gets a snapshot.
                log_event(log, logging.INFO, "breaker watch cannot resume: sending a snapshot",
                          from_revision=position, peer=context.peer())
                position = ""
            resumed = bool(position)
            snapshots: list[BreakerSnapshot] = []
            if not position:
                # Snapshot first, from a stream position taken before it: no gap.
                position, _ = await self._store.read_events("", block=0.0)
                snapshots = await self._store.list(
                    namespace=request.namespace, target=request.app_id
                )
            follower = asyncio.create_task(follow(position))
            snapshot_sent = await _write_all(context, (breaker_pb2.WatchBreakersResponse(
                revision=position, snapshot=True, breaker=breaker_to_pb(snapshot)
            ) for snapshot in snapshots), overflow)
            if snapshot_sent and request.mark_synced:
                await _write_unless(context, breaker_pb2.WatchBreakersResponse(
                    revision=position, snapshot=not resumed, synced=True,
                ), overflow)
            sent = position
            while not overflow.is_set():
                if backlog.empty():
                    waiting = asyncio.ensure_future(backlog.get())
                    await asyncio.wait({waiting, follower},
                                       return_when=asyncio.FIRST_COMPLETED)
                    if not waiting.done():
                        waiting.cancel()
                        follower.result()  # StoreUnavailable, or overflow (loop ends)
                        continue
                    message = waiting.result()
                else:  # a backlog drains without a future per message
                    message = backlog.get_nowait()
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


def _not_found(key: BreakerKey) -> str:
    return (f"circuit breaker {key} ({key.display_name}) not found: breakers exist once an "
            "agent has reported outcomes for them, or an operator has set an override on one "
            "ahead of use")


def _override_detail(reason: str, ttl: float) -> str:
    detail = f"reason: {reason}" if reason else ""
    if ttl:
        detail += f"{'; ' if detail else ''}ttl {ttl:g}s"
    return detail


async def _write_all(context: grpc.aio.ServicerContext[Any, Any],
                     messages: Iterable[breaker_pb2.WatchBreakersResponse],
                     overflow: asyncio.Event) -> bool:
    """Write every message; False if ``overflow`` stopped the writes first."""
    for message in messages:
        if not await _write_unless(context, message, overflow):
            return False
    return True


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
