"""Cluster mode, link side: interest, reports, breaker updates, modes, probe leases.

``ClusterSync`` lives on the policy link's event loop (the application's loop
for ``AsyncAgent``, the link thread's for ``Agent``). It is the only code that
talks to the control plane about breakers; breakers reach it through the
``ClusterPort`` contract, and never wait on it except for a probe lease.

Modes: breakers follow the cluster (hold a fleet view beside their own
per-instance machine) while the Connect stream is up and the server has not
said ``ModeChange{LOCAL}``; otherwise only their own machine decides. Each
mode change is logged once.

Every ``BreakerUpdate`` taken in while following is acknowledged
(``BreakerAck{key, generation}``), so the server can measure how long a
transition takes to reach the last agent holding the breaker. Acks are not
written one per update: they are queued (the newest generation per breaker)
and sent as one ``BreakerAcks`` message by the flusher, which an ack wakes
``ClusterConfig.ack_delay`` later so that a burst of updates shares one message.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import itertools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import grpc

from fusebox.agent._budget_sync import BudgetSync
from fusebox.agent._cluster_port import LeaseAnswer
from fusebox.agent._live_breaker import Breaker
from fusebox.agent._registry import BreakerRegistry
from fusebox.agent._reporting import ReportLimits, outcome_entries, pack_reports, probe_entry
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.wire_enums import CAUSE_FROM_PB, OVERRIDE_FROM_PB, STATE_FROM_PB
from fusebox.v1 import agent_pb2, agent_pb2_grpc

#: The longest an idle agent waits between looks at its outcome accumulators.
MAX_IDLE_REPORT_INTERVAL = 0.08
log = logging.getLogger("fusebox.agent.cluster")

Send = Callable[[agent_pb2.ConnectRequest], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Timing and bounds of cluster mode (``LinkConfig`` carries them)."""

    report_interval: float = 0.01  # seconds between two flushes of accumulated outcomes
    probe_lease_timeout: float = 0.1  # deadline of an AcquireProbeLease call
    limits: ReportLimits = field(default_factory=ReportLimits)
    #: Seconds an update's ack waits for the next ones before the flusher sends them.
    ack_delay: float = 0.002


class ClusterSync:
    """Keeps an agent's breakers in step with the control plane (see module doc)."""

    def __init__(
        self, registry: BreakerRegistry, config: ClusterConfig | None = None,
        instance_id: str = "", budgets: BudgetSync | None = None, *,
        shares_breakers: bool = True,
    ) -> None:
        self._registry = registry
        #: False: ``registry`` is an empty stand-in (the agent keeps its breakers per
        #: instance) and only fleet budgets use this stream; it never "follows".
        self.shares_breakers = shares_breakers
        #: Fleet budgets' usage and shares (docs/budgets.md): they ride this flusher.
        self.budgets = budgets
        self._instance_id = instance_id
        self.config = config or ClusterConfig()
        #: True while breakers follow the cluster (connected, and not told to go local).
        self.following = False
        self._connected = False
        self._told_local = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stub: agent_pb2_grpc.AgentServiceStub | None = None
        self._metadata: tuple[tuple[str, str], ...] = ()  # of the session's calls
        self._interest: collections.deque[tuple[bool, BreakerKey]] = collections.deque()
        self._probes: collections.deque[agent_pb2.BreakerOutcomes] = collections.deque()
        #: Updates applied and not acknowledged yet: the newest generation per breaker.
        self._acks: dict[BreakerKey, int] = {}
        self._ack_timer: asyncio.TimerHandle | None = None
        self._urgent = asyncio.Event()
        self._wake_pending = False
        self._sequence: Iterator[int] = itertools.count(1)
        self._rejected: set[BreakerKey] = set()
        #: Reasons already logged for rejections that name no breaker (budget usage).
        self._rejected_reasons: set[str] = set()
        registry.cluster = self

    # -- the link's side -------------------------------------------------------------

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop the link runs on (where reports are sent and leases asked)."""
        self._loop = loop
        if self.budgets is not None:
            self.budgets.bind(loop)

    def session_started(
        self, stub: agent_pb2_grpc.AgentServiceStub, metadata: tuple[tuple[str, str], ...] = (),
    ) -> agent_pb2.ConnectRequest:
        """A stream is up: follow the cluster; the interest to send for every live breaker.

        ``stub`` is the session's, for probe leases; ``metadata`` what each of
        its calls carries (the link's bearer token).
        """
        self._stub, self._metadata = stub, metadata
        self._connected = True
        self._told_local = False
        self._sequence = itertools.count(1)
        self._rejected.clear()
        self._rejected_reasons.clear()
        self._interest.clear()  # the full interest below supersedes queued changes
        if self.budgets is not None:
            self.budgets.session_started()
        self._set_following(True, "connected to the control plane")
        return self.full_interest()

    def session_ended(self, *, closing: bool = False) -> None:
        """The stream is gone: every breaker runs locally until the next one.

        ``closing``: the agent itself is shutting down, which is no news.
        """
        self._stub = None
        self._connected = False
        self._set_following(False, "agent closing" if closing else
                            "disconnected from the control plane", quiet=closing)
        self._probes.clear()
        self._interest.clear()
        self._acks.clear()  # the next stream's server sends its own updates
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self.budgets is not None:
            self.budgets.session_ended(closing=closing)

    def full_interest(self) -> agent_pb2.ConnectRequest:
        keys = [b.key.to_proto() for b in self._registry.breakers() if b.key is not None]
        return agent_pb2.ConnectRequest(
            interest=agent_pb2.BreakerInterest(add=keys, acks_updates=True)
        )

    def on_response(self, response: agent_pb2.ConnectResponse) -> agent_pb2.ConnectRequest | None:
        """Handle a breaker message from the server; maybe a message to send back."""
        kind = response.WhichOneof("message")
        if kind == "breaker_update":
            self.on_update(response.breaker_update)
        elif kind == "mode":
            return self.on_mode(response.mode)
        elif kind == "report_rejected":
            self.on_rejected(response.report_rejected)
        elif (kind == "budget_shares" and self.budgets is not None
              and self.budgets.on_shares(response.budget_shares) and self._connected):
            self.wake_here()  # a raise elsewhere may wait for this ack: send it now
        return None

    def on_update(self, update: agent_pb2.BreakerUpdate) -> bool:
        """Adopt a ``BreakerUpdate`` at once; False when it applies to nothing here.

        An update taken in by a breaker this agent holds is acknowledged, also
        when the breaker held that generation already (a repeat, or an older
        update overtaken by an interest answer): the ack says "this agent holds
        ``generation`` or newer", which is true either way.
        """
        if not self.following:
            return False
        key = BreakerKey.try_from_proto(update.key)
        state = STATE_FROM_PB.get(update.state)
        if key is None or state is None:
            return False
        breaker = self._registry.by_key(key)
        if breaker is None:
            return False
        remaining = (
            update.open_remaining.ToNanoseconds() / 1e9
            if update.HasField("open_remaining") else None
        )
        applied = breaker.apply_fleet(
            state, update.generation, remaining, OVERRIDE_FROM_PB.get(update.override),
            CAUSE_FROM_PB.get(update.cause),
        )
        self._queue_ack(key, update.generation)
        return applied

    def _queue_ack(self, key: BreakerKey, generation: int) -> None:
        """Ack ``generation`` of ``key`` with the flush ``ack_delay`` from the first
        ack queued (on the link's loop, where updates are read)."""
        self._acks.pop(key, None)  # the newest update of a breaker is acked last
        self._acks[key] = generation
        loop = self._loop
        if self._ack_timer is None and loop is not None:
            self._ack_timer = loop.call_later(self.config.ack_delay, self._acks_due)

    def _acks_due(self) -> None:
        self._ack_timer = None
        if self._acks:
            self.wake_here()

    def on_mode(self, change: agent_pb2.ModeChange) -> agent_pb2.ConnectRequest | None:
        reason = change.reason or "told by the control plane"
        if change.mode == agent_pb2.BREAKER_MODE_LOCAL:
            self._told_local = True
            self._set_following(False, reason)
        elif change.mode == agent_pb2.BREAKER_MODE_CLUSTER:
            self._told_local = False
            if self._connected and not self.following:
                self._set_following(True, reason)
                return self.full_interest()  # the answers bring the cluster state back
        return None

    def on_rejected(self, rejected: agent_pb2.ReportRejected) -> None:
        key = BreakerKey.try_from_proto(rejected.key)
        if key is None:
            # No breaker named: the server refused a report's budget usage entries (the
            # reason names the field); the breakers' outcomes went through. Said once.
            if rejected.reason not in self._rejected_reasons:
                self._rejected_reasons.add(rejected.reason)
                log.warning("control plane rejected budget usage: %s", rejected.reason,
                            extra={"fusebox_event": "report_rejected",
                                   "reason": rejected.reason})
            return
        if key in self._rejected:
            return
        self._rejected.add(key)
        log.warning("control plane rejected reports for breaker %s: %s; not reporting it "
                    "any more on this connection", key, rejected.reason,
                    extra={"fusebox_event": "report_rejected", "breaker_key": str(key),
                           "reason": rejected.reason})
        breaker = self._registry.by_key(key)
        if breaker is not None:
            breaker.reject_reports()

    async def run_flusher(self, send: Send) -> None:
        """Every ``report_interval``, or at once when woken: send interest, then reports.

        An agent with nothing to report backs off (doubling up to
        ``MAX_IDLE_REPORT_INTERVAL``), then parks: one timer per event loop
        (``IdleWatch``) looks at every parked agent of that loop and wakes
        those with something to send, so a process holding hundreds of idle
        agents wakes a dozen times a second, not thousands. Every failure
        wakes the flusher at once (wakes coalesce to one per flush).
        """
        base = self.config.report_interval
        idle_limit = max(base, MAX_IDLE_REPORT_INTERVAL)
        interval = base
        while True:
            if interval >= idle_limit:
                await self._parked(idle_limit)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._urgent.wait()
            self._urgent.clear()
            self._wake_pending = False
            messages = self.take_messages()
            if not messages:
                interval = min(interval * 2, idle_limit)
                continue
            interval = base
            for message in messages:
                await send(message)

    async def _parked(self, interval: float) -> None:
        watch = IdleWatch.of(asyncio.get_running_loop(), interval)
        watch.park(self)
        try:
            await self._urgent.wait()
        finally:
            watch.unpark(self)

    def has_pending(self) -> bool:
        """Whether a flush now would send anything (interest, probes or outcomes)."""
        if self._interest or self._probes or self._acks:
            return True
        if self.budgets is not None and self.budgets.has_pending():
            return True
        return any(b.outcomes.pending() for b in self._registry.breakers())

    def take_messages(self) -> list[agent_pb2.ConnectRequest]:
        """What is due now: interest changes first, then acks, then outcome reports
        (with the budgets' usage entries and share acks), in order."""
        messages: list[agent_pb2.ConnectRequest] = []
        interest = self._take_interest()
        if interest is not None:
            messages.append(agent_pb2.ConnectRequest(interest=interest))
        limits = self.config.limits
        messages.extend(self._take_acks(limits.max_breakers))
        entries: list[agent_pb2.BreakerOutcomes] = []
        while self._probes:
            entries.append(self._probes.popleft())
        for breaker in self._registry.breakers():
            if breaker.key is None or not breaker.outcomes.pending():
                continue
            runs, rejected = breaker.take_outcomes()
            if runs or rejected:
                entries.extend(outcome_entries(breaker.key.to_proto(), runs, limits, rejected))
        budgets = self.budgets
        usage = budgets.take_usage() if budgets is not None and self._connected else []
        share_acks = budgets.take_acks() if budgets is not None else []
        for report in pack_reports(entries, limits, self._sequence, usage, share_acks):
            messages.append(agent_pb2.ConnectRequest(report=report))
        return messages

    # -- the breakers' side (ClusterPort) ----------------------------------------------

    def wake(self) -> None:
        """Wake the flusher now (a failure: the fleet must hear of it at once).

        From the link's own loop (an ``AsyncAgent``'s calls) the flusher's event
        is set directly: no write to the loop's self-pipe on the call path, and
        the flusher runs in the loop's next turn. From another thread (a sync
        ``Agent``) the set goes through ``call_soon_threadsafe``. Wakes coalesce
        to one per flush.
        """
        loop = self._loop
        if self._wake_pending or loop is None:
            return
        self._wake_pending = True
        if asyncio._get_running_loop() is loop:
            self._urgent.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._urgent.set)

    def wake_here(self) -> None:
        """``wake`` from the link's own loop (no hop through the loop's self-pipe)."""
        self._wake_pending = True
        self._urgent.set()

    def report_probe(self, key: BreakerKey, lease_id: str, generation: int,
                     success: bool) -> None:
        if self.following:
            self._probes.append(probe_entry(key.to_proto(), generation, lease_id, success))
            self.wake()

    def breaker_created(self, breaker: Breaker) -> None:
        if self.following:
            breaker.follow(self)
        if self._connected and breaker.key is not None:
            self._interest.append((True, breaker.key))

    def breaker_dropped(self, breaker: Breaker) -> None:
        breaker.follow(None)
        if self._connected and breaker.key is not None:
            self._interest.append((False, breaker.key))

    def lease_sync(self, key: BreakerKey, generation: int) -> LeaseAnswer | None:
        loop = self._loop
        if loop is None or not self.following:
            return None
        if _running_loop() is loop:
            return None  # blocking here would stall the very loop that must answer
        future = asyncio.run_coroutine_threadsafe(self._lease(key, generation), loop)
        try:
            # The RPC carries its own deadline; this also bounds the hop to the loop.
            return future.result(timeout=2 * self.config.probe_lease_timeout)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            future.cancel()
            return None

    async def lease_async(self, key: BreakerKey, generation: int) -> LeaseAnswer | None:
        loop = self._loop
        if loop is None or not self.following:
            return None
        if asyncio.get_running_loop() is loop:
            return await self._lease(key, generation)
        future = asyncio.run_coroutine_threadsafe(self._lease(key, generation), loop)
        try:
            async with asyncio.timeout(2 * self.config.probe_lease_timeout):
                return await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            return None

    # -- internals ---------------------------------------------------------------------

    async def _lease(self, key: BreakerKey, generation: int) -> LeaseAnswer | None:
        stub = self._stub
        if stub is None:
            return None
        request = agent_pb2.AcquireProbeLeaseRequest(
            instance_id=self._instance_id, key=key.to_proto(), generation=generation,
        )
        try:
            response = await stub.AcquireProbeLease(
                request, timeout=self.config.probe_lease_timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as e:
            log.debug("probe lease for %s not answered (%s): deciding locally", key, e.code())
            return None
        return LeaseAnswer(response.granted, response.lease_id,
                           STATE_FROM_PB.get(response.state), response.generation)

    def _take_interest(self) -> agent_pb2.BreakerInterest | None:
        if not self._interest:
            return None
        last: dict[BreakerKey, bool] = {}
        while self._interest:
            added, key = self._interest.popleft()
            last[key] = added
        return agent_pb2.BreakerInterest(
            add=[k.to_proto() for k, added in last.items() if added],
            remove=[k.to_proto() for k, added in last.items() if not added],
            acks_updates=True,
        )

    def _take_acks(self, per_message: int) -> list[agent_pb2.ConnectRequest]:
        """The queued acks as ``BreakerAcks`` messages of at most ``per_message``."""
        if not self._acks:
            return []
        acks = [agent_pb2.BreakerAck(key=key.to_proto(), generation=generation)
                for key, generation in self._acks.items()]
        self._acks.clear()
        return [agent_pb2.ConnectRequest(breaker_acks=agent_pb2.BreakerAcks(
                    acks=acks[i:i + per_message]))
                for i in range(0, len(acks), per_message)]

    def _set_following(self, following: bool, reason: str, *, quiet: bool = False) -> None:
        following = following and self._connected and not self._told_local and (
            self.shares_breakers)
        if following == self.following:
            return
        self.following = following
        if following:
            log.info("circuit breakers follow the fleet's state beside their own (%s)", reason,
                     extra={"fusebox_event": "breaker_mode", "mode": "cluster",
                            "reason": reason})
        else:
            log.log(logging.DEBUG if quiet else logging.WARNING,
                    "circuit breakers run per instance only (%s)", reason,
                        extra={"fusebox_event": "breaker_mode", "mode": "local",
                               "reason": reason})
        for breaker in self._registry.breakers():
            breaker.follow(self if following else None)


class IdleWatch:
    """One timer per event loop for every parked flusher on it (see ``run_flusher``).

    Only ever used on its loop. It keeps no reference to the loop while nobody
    is parked (the timer is cancelled), so the per-loop registry never keeps a
    finished loop alive.
    """

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IdleWatch]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._parked: dict[ClusterSync, None] = {}  # insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None

    _by_loop_lock: ClassVar[threading.Lock] = threading.Lock()  # sync links: a loop per thread

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, interval: float) -> IdleWatch:
        with cls._by_loop_lock:
            watch = cls._by_loop.get(loop)
            if watch is None:
                watch = cls._by_loop[loop] = cls(interval)
        # Links with different report settings share the shortest look interval.
        watch.interval = min(watch.interval, interval)
        return watch

    @property
    def parked(self) -> int:
        return len(self._parked)

    def park(self, sync: ClusterSync) -> None:
        self._parked[sync] = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._look)

    def unpark(self, sync: ClusterSync) -> None:
        self._parked.pop(sync, None)
        if not self._parked and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self) -> None:
        self._timer = None
        for sync in list(self._parked):
            if sync.has_pending():
                del self._parked[sync]
                sync.wake_here()
        if self._parked:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self._look)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
