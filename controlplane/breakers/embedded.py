"""The embedded breaker store: cluster-wide breaker state in this process's memory.

Breaker state is ephemeral in the embedded default (specs are the durable
part), so a restart starts every breaker closed. The state machine is
``fusebox.agent.breaker.BreakerStateMachine`` itself, the very code the agent runs in
local mode, driven with this store's clock (unix seconds). What this module
adds around it is what a cluster needs: the generation agents see, probe
leases, overrides, deadlines and the event log.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import heapq
import itertools
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence

from fusebox.agent.breaker import (
    BreakerOverride,
    BreakerState,
    BreakerStateMachine,
    Counts,
    TransitionCause,
)
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy
from fusebox.agent.trip import compile_trip
from fusebox.controlplane.breakers.model import (
    FAILING_INSTANCES_SHOWN,
    BreakerEvent,
    BreakerNotFound,
    BreakerSnapshot,
    BreakerTarget,
    LeaseGrant,
    OutcomeBatch,
    OverrideInfo,
    TargetOverride,
)

__all__ = ["EmbeddedBreakerStore"]

_CLOSED, _OPEN, _HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
_RECENT_PER_BREAKER = 100

# Deadline kinds in the heap (a target override's deadline names it by a key
# of the target without a method).
_OPEN_ENDS, _OVERRIDE_ENDS, _LEASE_ENDS, _TARGET_ENDS = "open", "override", "lease", "target"


def _new_machine(policy: CircuitBreakerPolicy, now: float) -> BreakerStateMachine:
    return BreakerStateMachine(
        max_requests=policy.max_requests,
        interval=policy.interval,
        timeout=policy.timeout,
        trip=compile_trip(policy.trip),
        now=now,
        quorum=policy.quorum,
    )


class _Entry:
    """One breaker: its machine plus the cluster-level state around it."""

    __slots__ = (
        "generation", "key", "leases", "machine", "override", "policy", "recent", "updated_at",
    )

    def __init__(self, key: BreakerKey, policy: CircuitBreakerPolicy, now: float) -> None:
        self.key = key
        self.policy = policy
        self.machine = _new_machine(policy, now)
        #: Changes of effective state (the machine's own generation also counts
        #: closed-window rollovers; agents never see those).
        self.generation = 0
        self.override: OverrideInfo | None = None
        self.leases: dict[str, float] = {}  # lease id -> expires at
        self.updated_at = now
        self.recent: deque[BreakerEvent] = deque(maxlen=_RECENT_PER_BREAKER)

    @property
    def effective_state(self) -> BreakerState:
        if self.override is None:
            return self.machine.state
        return _OPEN if self.override.override is BreakerOverride.FORCE_OPEN else _CLOSED


class EmbeddedBreakerStore:
    """A ``BreakerStore`` in memory; ``clock`` returns unix seconds (inject it in tests).

    >>> store = EmbeddedBreakerStore(clock=lambda: 1_700_000_000.0)
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, events_maxlen: int = 10_000
    ) -> None:
        self._clock = clock
        self._entries: dict[BreakerKey, _Entry] = {}
        self._targets: dict[BreakerTarget, TargetOverride] = {}
        self._deadlines: builtins.list[tuple[float, int, str, BreakerKey]] = []
        self._tiebreak = itertools.count()
        self._log: deque[BreakerEvent] = deque(maxlen=events_maxlen)
        self._sequence = 0  # stream id of the newest event
        #: Names this store's stream in positions (``<sequence>@<epoch>``).
        self._epoch = secrets.token_hex(4)
        self._appended: asyncio.Condition | None = None

    # -- reports and leases ------------------------------------------------------

    async def apply(self, batches: Sequence[OutcomeBatch]) -> builtins.list[BreakerEvent]:
        for batch in batches:
            batch.check()
        events: builtins.list[BreakerEvent] = []
        for batch in batches:
            events += self._apply_one(batch, self._clock())
        await self._notify(events)
        return events

    def _apply_one(self, batch: OutcomeBatch, now: float) -> builtins.list[BreakerEvent]:
        entry = self._entries.get(batch.key)
        events: builtins.list[BreakerEvent] = []
        if entry is None:
            entry = self._create(batch.key, batch.policy, now)
            events = self._adopt(entry, now)  # it starts with its target's override, if any
        else:
            self._replace_policy(entry, batch.policy, now)
        entry.updated_at = now
        if entry.override is not None:
            return events  # frozen: force-open drops, force-closed/disabled do not count
        machine = entry.machine
        events += self._refresh(entry, now)
        if machine.state is _HALF_OPEN:
            self._expire_leases(entry, now)
            if batch.lease_id not in entry.leases:
                return events  # not a live probe: admitted before, or its lease expired
            del entry.leases[batch.lease_id]
            # A lease admits one probe: its first outcome.
            for run, instance in batch.attributed_runs():
                if run != 0:
                    machine.after_request(machine.generation, run > 0, now, instance)
                    events += self._drain(entry, instance)
                    break
            return events
        if machine.state is _OPEN or batch.lease_id:
            return events  # stale: admitted before the trip, or a probe of an ended period
        # Closed at the start of every run: a trip ends the batch (open drops the rest).
        for run, instance in batch.attributed_runs():
            if run > 0:
                machine.record_successes(run, now, instance)  # bulk: same as one by one
                continue
            for _ in range(-run):
                generation = machine.before_request(now)
                if generation is None:
                    break
                machine.after_request(generation, False, now, instance)
            if machine.state is not _CLOSED:
                return events + self._drain(entry, instance)
        return events

    def _create(self, key: BreakerKey, policy: CircuitBreakerPolicy, now: float) -> _Entry:
        entry = self._entries[key] = _Entry(key, policy, now)
        return entry

    def _target_override(self, key: BreakerKey, now: float) -> TargetOverride | None:
        """The target override in force for ``key`` (an expired one is ignored)."""
        found = self._targets.get(BreakerTarget.of(key))
        if found is None or (found.info.expires_at is not None and found.info.expires_at < now):
            return None
        return found

    def _adopt(self, entry: _Entry, now: float) -> builtins.list[BreakerEvent]:
        """A new breaker takes its target's override, if one is in force."""
        rule = self._target_override(entry.key, now)
        if rule is None:
            return []
        info = rule.info
        return self._set_override(
            entry, info.override, info.reason, info.set_by, info.expires_at, now, rule.detail
        )

    def _replace_policy(self, entry: _Entry, policy: CircuitBreakerPolicy, now: float) -> None:
        old = entry.policy
        if policy == old:
            return
        entry.policy = policy
        machine = entry.machine
        machine.max_requests = max(1, policy.max_requests)
        machine.interval = policy.interval
        machine.timeout = policy.timeout
        machine.trip = compile_trip(policy.trip)
        rules_changed = (
            old.trip != policy.trip
            or old.interval != policy.interval
            or old.quorum != policy.quorum
        )
        if old.quorum != policy.quorum:
            machine.quorum = policy.quorum
        if rules_changed:
            # Counts gathered under another trip, window or quorum mean nothing to the new one.
            machine.restart_window(now)

    async def acquire_lease(
        self, key: BreakerKey, policy: CircuitBreakerPolicy, instance_id: str, ttl: float
    ) -> LeaseGrant:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            return LeaseGrant(False, "", 0.0, _CLOSED, 0)
        events: builtins.list[BreakerEvent] = []
        granted = None
        if entry.override is None:
            events = self._refresh(entry, now)
            if entry.machine.state is _HALF_OPEN:
                self._expire_leases(entry, now)
                if entry.machine.before_request(now) is not None:
                    granted = uuid.uuid4().hex
                    entry.leases[granted] = now + ttl
                    self._schedule(now + ttl, _LEASE_ENDS, key)
        await self._notify(events)
        state = entry.effective_state
        if granted is None:
            return LeaseGrant(False, "", 0.0, state, entry.generation)
        return LeaseGrant(True, granted, now + ttl, state, entry.generation)

    # -- time ----------------------------------------------------------------------

    async def advance(self) -> builtins.list[BreakerEvent]:
        now = self._clock()
        events: builtins.list[BreakerEvent] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] < now:
            _, _, kind, key = heapq.heappop(deadlines)
            if kind == _TARGET_ENDS:
                self._forget_expired(BreakerTarget.of(key), now)
                continue
            entry = self._entries.get(key)
            if entry is None:
                continue  # stale deadline
            if kind == _OVERRIDE_ENDS:
                override = entry.override
                if override and override.expires_at is not None and override.expires_at < now:
                    events += self._set_override(
                        entry, None, "", "", None, now, "override expired"
                    )
            elif kind == _OPEN_ENDS:
                if entry.override is None:
                    events += self._refresh(entry, now)
            else:
                self._expire_leases(entry, now)
        await self._notify(events)
        return events

    # -- operations ------------------------------------------------------------------

    async def get(self, key: BreakerKey) -> BreakerSnapshot | None:
        entry = self._entries.get(key)
        return None if entry is None else self._snapshot(entry, self._clock())

    async def list(
        self, *, namespace: str = "", target: str = "", state: BreakerState | None = None
    ) -> builtins.list[BreakerSnapshot]:
        now = self._clock()
        return [
            self._snapshot(entry, now)
            for key, entry in sorted(self._entries.items(), key=lambda i: i[0].encode())
            if (not namespace or key.namespace == namespace)
            and (not target or key.target == target)
            and (state is None or entry.effective_state is state)
        ]

    async def set_override(
        self,
        key: BreakerKey,
        override: BreakerOverride | None,
        *,
        reason: str,
        ttl: float | None,
        set_by: str,
        policy: CircuitBreakerPolicy | None = None,
    ) -> BreakerSnapshot:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            if policy is None or override is None:
                raise BreakerNotFound(key)
            entry = self._create(key, policy, now)  # an override ahead of use
        expires_at = now + ttl if ttl else None
        events = self._set_override(
            entry, override, reason, set_by, expires_at, now, _detail(reason, set_by)
        )
        await self._notify(events)
        return self._snapshot(entry, now)

    async def set_target_override(
        self,
        target: BreakerTarget,
        override: BreakerOverride | None,
        *,
        reason: str,
        ttl: float | None,
        set_by: str,
    ) -> builtins.list[BreakerSnapshot]:
        now = self._clock()
        expires_at = now + ttl if ttl else None
        detail = _detail(reason, set_by)
        if override is None:
            self._targets.pop(target, None)
        else:
            info = OverrideInfo(override, reason, expires_at, set_by)
            self._targets[target] = TargetOverride(target, info, detail)
            if expires_at is not None:
                self._schedule(expires_at, _TARGET_ENDS, _target_marker(target))
        entries = [
            entry for key, entry in sorted(self._entries.items(), key=lambda i: i[0].encode())
            if target.covers(key)
        ]
        events: builtins.list[BreakerEvent] = []
        for entry in entries:
            events += self._set_override(entry, override, reason, set_by, expires_at, now, detail)
        await self._notify(events)
        return [self._snapshot(entry, now) for entry in entries]

    async def target_overrides(
        self, *, namespace: str = "", target: str = ""
    ) -> builtins.list[TargetOverride]:
        now = self._clock()
        return [
            rule
            for t, rule in sorted(self._targets.items(), key=lambda i: i[0].encode())
            if (not namespace or t.namespace == namespace) and (not target or t.target == target)
            and not (rule.info.expires_at is not None and rule.info.expires_at < now)
        ]

    async def adopt_target_override(
        self, key: BreakerKey, policy: CircuitBreakerPolicy
    ) -> BreakerSnapshot | None:
        now = self._clock()
        entry = self._entries.get(key)
        if entry is None:
            if self._target_override(key, now) is None:
                return None
            entry = self._create(key, policy, now)
            await self._notify(self._adopt(entry, now))
        return self._snapshot(entry, now)

    def _forget_expired(self, target: BreakerTarget, now: float) -> None:
        rule = self._targets.get(target)
        if rule is not None and rule.info.expires_at is not None and rule.info.expires_at < now:
            del self._targets[target]

    def _set_override(
        self,
        entry: _Entry,
        override: BreakerOverride | None,
        reason: str,
        set_by: str,
        expires_at: float | None,
        now: float,
        detail: str,
    ) -> builtins.list[BreakerEvent]:
        before = entry.effective_state
        had = None if entry.override is None else entry.override.override
        if override is None:
            entry.override = None
            if entry.machine.state is _OPEN and entry.machine.expiry is not None:
                # Its deadline may have been skipped while frozen.
                self._schedule(entry.machine.expiry, _OPEN_ENDS, entry.key)
        else:
            entry.override = OverrideInfo(override, reason, expires_at, set_by)
            if expires_at is not None:
                self._schedule(expires_at, _OVERRIDE_ENDS, entry.key)
        entry.updated_at = now
        if override is had:
            return []  # agents hear of every change of the override itself, no more
        return [self._record(entry, before, TransitionCause.OVERRIDE, now, detail=detail)]

    async def reset(self, key: BreakerKey, *, reason: str, set_by: str) -> BreakerSnapshot:
        entry = self._entries.get(key)
        if entry is None:
            raise BreakerNotFound(key)
        now = self._clock()
        before = entry.effective_state
        entry.machine = _new_machine(entry.policy, now)
        entry.override = None
        entry.leases.clear()
        entry.updated_at = now
        detail = _detail(reason, set_by)
        event = self._record(entry, before, TransitionCause.RESET, now, detail=detail)
        await self._notify([event])
        return self._snapshot(entry, now)

    async def recent_events(self, key: BreakerKey, count: int = 20) -> builtins.list[BreakerEvent]:
        entry = self._entries.get(key)
        if entry is None or count <= 0:
            return []
        return builtins.list(entry.recent)[-count:]

    async def read_events(
        self, after: str, *, block: float = 0.0, count: int = 1000
    ) -> tuple[str, builtins.list[BreakerEvent]]:
        start = self._sequence if after == "" else _parse_position(after)[0]
        events = self._events_after(start, count)
        if not events and block > 0:
            condition = self._condition()
            async with condition:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        condition.wait_for(lambda: self._sequence > start), block
                    )
            events = self._events_after(start, count)
        return (events[-1].position if events else self._position(start)), events

    async def resumable(self, position: str) -> bool:
        oldest = self._sequence - len(self._log)  # every event after it is still held
        if position == "0":
            return oldest == 0
        try:
            sequence, epoch = _parse_position(position)
        except ValueError:
            return False
        # Sequence numbers start again at 1 in a new process: the epoch tells them apart.
        return epoch == self._epoch and oldest <= sequence <= self._sequence

    def _position(self, sequence: int) -> str:
        return f"{sequence}@{self._epoch}"

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- internals ---------------------------------------------------------------------

    def _refresh(self, entry: _Entry, now: float) -> builtins.list[BreakerEvent]:
        """The machine's time rules at ``now`` (closed window rollover, open timeout)."""
        entry.machine.current_state(now)
        return self._drain(entry, "")

    def _drain(self, entry: _Entry, instance_id: str) -> builtins.list[BreakerEvent]:
        events = []
        for transition in entry.machine.take_transitions():
            entry.leases.clear()  # leases belong to one half-open period
            open_until = None
            if transition.to_state is _OPEN:
                open_until = entry.machine.expiry
                if open_until is not None:
                    self._schedule(open_until, _OPEN_ENDS, entry.key)
            events.append(
                self._record(
                    entry,
                    transition.from_state,
                    transition.cause,
                    transition.at,
                    instance_id=instance_id,
                    open_until=open_until,
                )
            )
        return events

    def _expire_leases(self, entry: _Entry, now: float) -> None:
        """Drop leases never reported in time and give their half-open slots back."""
        expired = [lease for lease, expires_at in entry.leases.items() if expires_at < now]
        if not expired:
            return
        for lease in expired:
            del entry.leases[lease]
        entry.machine.give_back_requests(len(expired))

    def _record(
        self,
        entry: _Entry,
        from_state: BreakerState,
        cause: TransitionCause,
        at: float,
        *,
        instance_id: str = "",
        detail: str = "",
        open_until: float | None = None,
    ) -> BreakerEvent:
        entry.generation += 1
        self._sequence += 1
        to_state = entry.effective_state
        if open_until is None and to_state is _OPEN and entry.machine.state is _OPEN:
            open_until = entry.machine.expiry
        event = BreakerEvent(
            key=entry.key,
            from_state=from_state,
            to_state=to_state,
            generation=entry.generation,
            cause=cause,
            at=at,
            instance_id=instance_id,
            detail=detail,
            open_until=open_until,
            stream_id=self._position(self._sequence),
            position=self._position(self._sequence),
        )
        entry.recent.append(event)
        self._log.append(event)
        return event

    def _snapshot(self, entry: _Entry, now: float) -> BreakerSnapshot:
        machine = entry.machine
        counts = machine.counts
        expiry = machine.expiry
        failing, reporting = machine.failing_instances, machine.reporting_instances
        if machine.state is _CLOSED and expiry is not None and expiry < now:
            counts = Counts()  # the window has rolled over; the next report starts a new one
            failing = reporting = frozenset()
        state = entry.effective_state
        return BreakerSnapshot(
            key=entry.key,
            policy=entry.policy,
            state=state,
            generation=entry.generation,
            counts=counts,
            open_until=expiry if state is _OPEN and machine.state is _OPEN else None,
            override=entry.override,
            active_leases=sum(1 for e in entry.leases.values() if not e < now),
            updated_at=entry.updated_at,
            failing_instances=tuple(sorted(failing)[:FAILING_INSTANCES_SHOWN]),
            failing_instance_count=len(failing),
            reporting_instance_count=len(reporting),
        )

    def _schedule(self, when: float, kind: str, key: BreakerKey) -> None:
        heapq.heappush(self._deadlines, (when, next(self._tiebreak), kind, key))

    def _events_after(self, start: int, count: int) -> builtins.list[BreakerEvent]:
        log = self._log
        if not log or start >= self._sequence:
            return []
        first = self._sequence - len(log) + 1  # stream id of log[0]
        skip = max(0, start - first + 1)
        return builtins.list(itertools.islice(log, skip, skip + max(0, count)))

    def _condition(self) -> asyncio.Condition:
        if self._appended is None:
            self._appended = asyncio.Condition()
        return self._appended

    async def _notify(self, events: builtins.list[BreakerEvent]) -> None:
        if events and self._appended is not None:
            async with self._appended:
                self._appended.notify_all()


def _detail(reason: str, set_by: str) -> str:
    return f"{reason} (by {set_by})" if set_by else reason


def _target_marker(target: BreakerTarget) -> BreakerKey:
    """The key a target's deadline is filed under in the heap (no method)."""
    return BreakerKey(target.namespace, target.spec, target.kind, target.target)


def _parse_position(text: str) -> tuple[int, str]:
    """``<sequence>@<epoch>`` (or a bare sequence, as "0") as (sequence, epoch)."""
    number, _, epoch = text.partition("@")
    try:
        position = int(number)
    except ValueError:
        raise ValueError(
            f"invalid event position {text!r}: expected '', '0' or a position returned "
            "by read_events"
        ) from None
    if position < 0:
        raise ValueError(f"invalid event position {text!r}: must not be negative")
    return position, epoch
