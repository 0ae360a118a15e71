"""Cluster-wide breakers on the server: ingest, aggregate, propagate, lease.

Data flow (docs/architecture.md):

    agents --OutcomeReport--> ingest() --pending--> aggregator round
        --> BreakerStore.apply(one batch per breaker)   (one Lua call each, pipelined)
        --> transitions stream (all replicas tail it)
    the applying replica --> its own sessions at once (no read back from the stream)
    tail --> one serialized BreakerUpdate per event --> every session holding the breaker
    (each replica pushes a transition once: on its own apply's reply or on the stream,
    whichever it reads first)

Rounds are paced by the tick only while reports carry nothing but successes: a
report with a failure or a probe outcome (which can change a decision) starts
a round at once, or right after the round in flight.

Agents acknowledge the updates they apply (``BreakerAcks``): the time from a
transition to the last holder's ack is the breaker's convergence
(``engines/convergence.py``). Reports also feed the per-target call tallies
(``engines/call_tally.py``), rejected calls included.

Redis load therefore follows busy breakers x tick rate, not the number of
agents. When the breaker store is unreachable, agents are told to go local
(ModeChange) and get the cluster state again when it comes back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable

from fusebox.agent.breaker import BreakerState, TransitionCause
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy
from fusebox.agent.wire_enums import CAUSE_TO_PB, OVERRIDE_TO_PB, STATE_TO_PB
from fusebox.controlplane.breakers.model import BreakerEvent, BreakerSnapshot, OutcomeBatch
from fusebox.controlplane.breakers.store import BreakerStore
from fusebox.controlplane.server.engines.breaker_policy import breaker_policy_for
from fusebox.controlplane.server.engines.call_tally import CallTallies, CallTally
from fusebox.controlplane.server.engines.convergence import (
    DEFAULT_DEADLINE,
    ConvergenceTracker,
)
from fusebox.controlplane.server.engines.policy_hub import PolicyHub
from fusebox.controlplane.server.engines.report_limits import (
    DEFAULT_MAX_BREAKERS_PER_TARGET,
    DEFAULT_REPORT_BURST,
    DEFAULT_REPORT_RATE,
    BreakerBudget,
    TokenBucket,
)
from fusebox.controlplane.server.engines.sessions import MAX_INTEREST, AgentSession
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.metrics import Metrics
from fusebox.controlplane.server.wire_time import timestamp
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import agent_pb2, policy_pb2

log = logging.getLogger("fusebox.server.breakers")

MAX_RUNS_PER_REPORT = 4096  # per breaker per message; agents split longer sequences
MAX_BREAKERS_PER_REPORT = 1024
MAX_PUSHED_REMEMBERED = 10_000  # stream ids of pushed transitions (see _first_sighting)
MAX_ACKS_PER_MESSAGE = 1024  # agents send at most one per breaker they hold, in batches

def _set_remaining(
    update: agent_pb2.BreakerUpdate, state: BreakerState, open_until: float | None, now: float
) -> None:
    """``open_remaining`` only for an open state with an end (unset: open until told)."""
    if state is BreakerState.OPEN and open_until is not None:
        update.open_remaining.FromNanoseconds(max(0, int((open_until - now) * 1e9)))


def update_from_event(event: BreakerEvent, now: float) -> bytes:
    """The BreakerUpdate agents get for a transition, serialized once."""
    update = agent_pb2.BreakerUpdate(
        key=event.key.to_proto(),
        state=STATE_TO_PB[event.to_state],
        generation=event.generation,
        cause=CAUSE_TO_PB[event.cause],
        time=timestamp(event.at),
    )
    _set_remaining(update, event.to_state, event.open_until, now)
    return agent_pb2.ConnectResponse(breaker_update=update).SerializeToString()


def update_from_snapshot(
    snapshot: BreakerSnapshot, now: float, cause: TransitionCause | None = None
) -> bytes:
    """The BreakerUpdate that brings an agent to a breaker's current state."""
    override = snapshot.override.override if snapshot.override else None
    update = agent_pb2.BreakerUpdate(
        key=snapshot.key.to_proto(),
        state=STATE_TO_PB[snapshot.state],
        generation=snapshot.generation,
        override=OVERRIDE_TO_PB[override],
        time=timestamp(snapshot.updated_at),
    )
    if cause is not None:
        update.cause = CAUSE_TO_PB[cause]
    _set_remaining(update, snapshot.state, snapshot.open_until, now)
    return agent_pb2.ConnectResponse(breaker_update=update).SerializeToString()


def merge_runs(sequences: Iterable[Iterable[int]]) -> tuple[int, ...]:
    """Concatenate run-length sequences, joining adjacent runs of the same sign."""
    merged: list[int] = []
    for runs in sequences:
        for run in runs:
            if run == 0:
                continue
            if merged and (merged[-1] > 0) == (run > 0):
                merged[-1] += run
            else:
                merged.append(run)
    return tuple(merged)


def merge_attributed_runs(
    batches: Iterable[OutcomeBatch],
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """``merge_runs`` keeping each run's instance: runs join only within one instance."""
    runs: list[int] = []
    instances: list[str] = []
    for batch in batches:
        for run, instance in batch.attributed_runs():
            if run == 0:
                continue
            if runs and instances[-1] == instance and (runs[-1] > 0) == (run > 0):
                runs[-1] += run
            else:
                runs.append(run)
                instances.append(instance)
    return tuple(runs), tuple(instances)


class ReportError(ValueError):
    """A report that breaks the protocol's bounds (the stream is then closed;
    docs/limits.md)."""


class ReportRateExceeded(ReportError):
    """More reports per second on one stream than its token bucket allows (the
    stream is closed with RESOURCE_EXHAUSTED and this message)."""


class BreakerHub:
    def __init__(
        self,
        store: BreakerStore,
        policies: PolicyHub,
        metrics: Metrics,
        *,
        tick: float = 0.005,
        advance_every: float = 0.05,
        clock: Callable[[], float] = time.time,
        report_rate: float = DEFAULT_REPORT_RATE,
        report_burst: int = DEFAULT_REPORT_BURST,
        max_breakers_per_target: int = DEFAULT_MAX_BREAKERS_PER_TARGET,
        monotonic: Callable[[], float] = time.monotonic,
        convergence_deadline: float = DEFAULT_DEADLINE,
    ) -> None:
        self.store = store
        self._policies = policies
        self._metrics = metrics
        self._tick = tick
        self._advance_every = advance_every
        self._clock = clock
        self._interest: dict[BreakerKey, set[AgentSession]] = defaultdict(set)
        # Outcomes waiting for the next tick, per breaker, in arrival order.
        self._pending: dict[BreakerKey, list[OutcomeBatch]] = {}
        self._probes: list[OutcomeBatch] = []
        self._pending_event = asyncio.Event()
        #: A queued report can change a decision (a failure, a probe): no tick wait.
        self._urgent = False
        #: Stream ids of the transitions pushed once already (bounded): a transition
        #: this replica applied arrives twice, from its own apply and from the
        #: stream, and whichever comes first is pushed (see ``_first_sighting``).
        self._pushed: set[tuple[BreakerKey, str]] = set()
        self._pushed_order: collections.deque[tuple[BreakerKey, str]] = collections.deque()
        self._outcomes_seen = 0  # since the last tick (see _take_batches)
        self._outcomes_stale = 0
        self._reports_seen = 0
        self.available = True
        self._report_rate, self._report_burst = report_rate, report_burst
        self._monotonic = monotonic
        self._buckets: dict[AgentSession, TokenBucket] = {}
        #: The newest cluster generation of each breaker this replica has seen (from
        #: the transitions it propagates and the states it sends): reports made
        #: under an older one are dropped. The latest wins, not the largest, so a
        #: store that lost its state (generations restart) is followed.
        self._generations: dict[BreakerKey, int] = {}
        self.budget = BreakerBudget(max_breakers_per_target)
        self.tallies = CallTallies(metrics.target_calls)
        #: Transitions waiting for their holders' acks (key, generation).
        self.convergence: ConvergenceTracker[BreakerKey, int] = ConvergenceTracker(
            ordered=True, unfinished=metrics.unfinished("breaker"),
            deadline=convergence_deadline, clock=clock, monotonic=monotonic,
        )
        metrics.watch_pending("breaker", lambda: self.convergence.pending)
        self._converged = {state: metrics.breaker_convergence.labels(state.value).observe
                           for state in BreakerState}

    # -- sessions ---------------------------------------------------------------

    def add_interest(self, session: AgentSession, keys: Iterable[BreakerKey]) -> list[BreakerKey]:
        added = []
        for key in keys:
            if key in session.interest or len(session.interest) >= MAX_INTEREST:
                continue
            session.interest.add(key)
            self._interest[key].add(session)
            added.append(key)
        return added

    def remove_interest(self, session: AgentSession, keys: Iterable[BreakerKey]) -> None:
        keys = list(keys)
        for key in keys:
            session.interest.discard(key)
            holders = self._interest.get(key)
            if holders is not None:
                holders.discard(session)
                if not holders:
                    del self._interest[key]
        self.convergence.forget(session, keys)

    def drop_session(self, session: AgentSession) -> None:
        self.remove_interest(session, list(session.interest))
        self.convergence.forget(session)
        self._buckets.pop(session, None)

    def acked(self, session: AgentSession, acks: agent_pb2.BreakerAcks) -> None:
        """The agent applied these updates (or holds a newer generation)."""
        if len(acks.acks) > MAX_ACKS_PER_MESSAGE:
            raise ReportError(f"breaker_acks: {len(acks.acks)} acks in one message, at most "
                              f"{MAX_ACKS_PER_MESSAGE} accepted")
        if not self.convergence.pending:
            return
        for ack in acks.acks:
            key = BreakerKey.try_from_proto(ack.key)
            if key is not None:
                self.convergence.answered(session, key, ack.generation)

    async def load_budget(self) -> None:
        """Count the breakers the store already holds against their targets' budgets."""
        self.budget.know(snapshot.key for snapshot in await self.store.list())

    async def send_current_state(self, session: AgentSession, keys: Iterable[BreakerKey]) -> None:
        """Answer an interest: the breakers' cluster state, where they have one.

        A breaker without state that a target override covers (an operator's
        override of every method, set before this agent used it) is created
        under it first, so the agent holds the override before its first
        report is even applied (docs/breaker-state.md).
        """
        now = self._clock()
        for key in keys:
            snapshot = await self.store.get(key)
            if snapshot is None:
                snapshot = await self._adopt_target_override(session, key)
            if snapshot is not None:
                self._generations[key] = snapshot.generation
                session.offer_update(key, update_from_snapshot(snapshot, now))

    async def _adopt_target_override(
        self, session: AgentSession, key: BreakerKey
    ) -> BreakerSnapshot | None:
        """``key``'s state created under its target's override, if one is in force;
        only for a breaker the agent's policies define, within its target's budget."""
        policy = breaker_policy_for(session.policies, key)
        if policy is None or not self.budget.admit(key):
            return None
        return await self.store.adopt_target_override(key, policy)

    def tell_mode(self, mode: agent_pb2.BreakerMode, reason: str) -> None:
        message = agent_pb2.ConnectResponse(mode=agent_pb2.ModeChange(mode=mode, reason=reason))
        for session in self._policies.sessions():
            session.offer_control(message)

    # -- ingest -----------------------------------------------------------------

    def ingest(self, session: AgentSession, report: agent_pb2.OutcomeReport) -> None:
        """Validate one report and queue its outcomes for the next tick.

        Raises ``ReportError`` (the stream is then closed) for a report beyond
        the protocol's bounds or the stream's rate; answers ReportRejected for
        a breaker it cannot take (unknown policy, target over its budget).
        """
        bucket = self._buckets.get(session)
        if bucket is None:
            bucket = self._buckets[session] = TokenBucket(
                self._report_rate, self._report_burst, self._monotonic
            )
        if not bucket.take():
            raise ReportRateExceeded(
                f"report: more than {self._report_rate:g} reports/s (burst "
                f"{self._report_burst}) on one stream; reconnect and report less often"
            )
        if len(report.breakers) > MAX_BREAKERS_PER_REPORT:
            raise ReportError(
                f"report: {len(report.breakers)} breakers in one message, at most "
                f"{MAX_BREAKERS_PER_REPORT} accepted"
            )
        longest = max((len(entry.runs) for entry in report.breakers), default=0)
        if longest > MAX_RUNS_PER_REPORT:  # checked before anything of it is queued
            raise ReportError(
                f"report: {longest} runs for one breaker, at most {MAX_RUNS_PER_REPORT} accepted"
            )
        known = session.breaker_policies
        for entry in report.breakers:
            k = entry.key
            fields = (k.namespace, k.spec, k.kind, k.target, k.method)
            if fields in known:
                found = known[fields]
            else:
                found = known[fields] = self._lookup(session, k)
            if found is None:
                continue  # refused (told once per key and policy snapshot)
            key, policy, tally = found
            runs = tuple(entry.runs)
            if 0 in runs:
                runs = tuple(r for r in runs if r != 0)
            if entry.rejected:
                tally.rejected += entry.rejected
                if not tally.dirty:
                    self.tallies.touched(tally)
            if not runs:
                continue
            # Calls happened whatever becomes of their outcomes below (stale, over
            # budget): the target's tally counts them all.
            total, net = sum(map(abs, runs)), sum(runs)
            tally.successes += (total + net) >> 1
            tally.failures += (total - net) >> 1
            if not tally.dirty:
                self.tallies.touched(tally)
            if not self.budget.admit(key):
                self._reject(session, entry.key,
                             f"target {key.target!r} of spec {key.namespace}/{key.spec} already "
                             f"has {self.budget.max_per_target} breakers (the server's limit per "
                             f"target); {key.display_name} stays local to the agent")
                continue
            outcomes = total
            self._outcomes_seen += outcomes
            if not entry.lease_id and entry.generation < self._generations.get(key, 0):
                # Calls admitted before a transition the agent had not yet heard
                # of: gobreaker ignores such results, and so does the cluster
                # (else a report delayed across a trip and a close would count
                # old failures against the new closed window). Probes carry
                # leases, which the store checks itself.
                self._outcomes_stale += outcomes
                continue
            batch = OutcomeBatch(key, policy, runs, session.instance_id, entry.lease_id)
            if entry.lease_id:
                self._probes.append(batch)
                self._urgent = True
            else:
                self._pending.setdefault(key, []).append(batch)
                if not self._urgent and min(runs) < 0:
                    self._urgent = True
        self._reports_seen += 1
        self._pending_event.set()

    def _lookup(
        self, session: AgentSession, wire_key: policy_pb2.BreakerKey
    ) -> tuple[BreakerKey, CircuitBreakerPolicy, CallTally] | None:
        """The breaker, policy and call tally a report key names, or None (and
        ReportRejected)."""
        try:
            key = BreakerKey.from_proto(wire_key)
        except ValueError as e:
            self._reject(session, wire_key, f"invalid breaker key: {e}")
            return None
        policy = breaker_policy_for(session.policies, key)
        if policy is None:
            self._reject(session, wire_key,
                         f"no circuit breaker policy for {key.display_name} in the "
                         f"policies of app {session.app_id!r} (spec {key.namespace}/"
                         f"{key.spec})")
            return None
        return key, policy, self.tallies.tally(session, key)

    def _reject(self, session: AgentSession, key: policy_pb2.BreakerKey, reason: str) -> None:
        self._metrics.reports_rejected.inc()
        message = agent_pb2.ConnectResponse(
            report_rejected=agent_pb2.ReportRejected(key=key, reason=reason)
        )
        session.offer_control(message)

    def _take_batches(self) -> list[OutcomeBatch]:
        # Counters are bumped once per tick: prometheus' own lock per report would
        # cost the ingest path more than the rest of it.
        self._metrics.outcomes_ingested.inc(self._outcomes_seen)
        self._metrics.reports_ingested.inc(self._reports_seen)
        self._metrics.outcomes_stale.inc(self._outcomes_stale)
        self._outcomes_seen = self._reports_seen = self._outcomes_stale = 0
        self.tallies.flush()
        pending, self._pending = self._pending, {}
        probes, self._probes = self._probes, []
        batches = list(probes)
        for key, parts in pending.items():
            last = parts[-1]
            if last.policy.quorum is None:
                batches.append(OutcomeBatch(
                    key, last.policy, merge_runs(p.runs for p in parts),
                    # Several instances may share a tick: name the last one (documented).
                    last.instance_id,
                ))
            else:  # a quorum counts instances: every run keeps its own
                runs, instances = merge_attributed_runs(parts)
                batches.append(OutcomeBatch(key, last.policy, runs, last.instance_id, "",
                                            instances))
        return batches

    # -- background loops -------------------------------------------------------

    async def run_aggregator(self) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self.load_budget()
        # Success-only rounds start at most once per tick: under load a tick's
        # reports share one round of scripts. A report that can change a decision
        # (a failure, a probe) starts a round at once: the trip never waits a tick.
        next_apply = 0.0
        while True:
            await self._pending_event.wait()
            self._pending_event.clear()
            wait = next_apply - time.monotonic()
            if wait > 0 and not self._urgent:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        while not self._urgent:  # a failure arriving meanwhile ends the wait
                            await self._pending_event.wait()
                            self._pending_event.clear()
            self._urgent = False
            next_apply = time.monotonic() + self._tick
            batches = self._take_batches()
            if not batches:
                continue
            started = time.perf_counter()
            try:
                events = await self.store.apply(batches)
            except StoreUnavailable as e:
                # Outcomes of an outage are dropped: agents run locally meanwhile.
                log_event(log, logging.WARNING, "outcomes dropped, breaker store unavailable",
                          breakers=len(batches), error=str(e))
                continue
            self._metrics.apply_seconds.observe(time.perf_counter() - started)
            await self._push_own(events)

    async def run_advancer(self) -> None:
        while True:
            await asyncio.sleep(self._advance_every)
            with contextlib.suppress(StoreUnavailable):
                await self._push_own(await self.store.advance())

    async def _push_own(self, events: list[BreakerEvent]) -> None:
        """Push transitions this replica made to its own sessions now; the other
        replicas get them from the stream."""
        if not events:
            return
        now = self._clock()
        for event in events:
            if self._first_sighting(event):
                await self._push(event, now)

    def _first_sighting(self, event: BreakerEvent) -> bool:
        """Whether this replica has not pushed ``event`` yet (and now counts it as pushed).

        A transition this replica applied comes back to it twice: in the reply
        of its own apply (or advance) and from the stream it tails. Both replies
        leave Redis at the same moment, and the event loop may read either one
        first; pushing on the first sighting and skipping the second means one
        update per agent, as early as either path allows.
        """
        if not event.stream_id:
            return True
        mark = (event.key, event.stream_id)
        if mark in self._pushed:
            self._pushed.discard(mark)  # the second sighting: nothing more to come
            return False
        self._pushed.add(mark)
        self._pushed_order.append(mark)
        while len(self._pushed_order) > MAX_PUSHED_REMEMBERED:
            self._pushed.discard(self._pushed_order.popleft())
        return True

    async def run_propagator(self) -> None:
        """Tail the transitions stream and push each event to its holders."""
        position = ""
        delay = 0.1
        while True:
            try:
                position, events = await self.store.read_events(position, block=1.0)
            except StoreUnavailable as e:
                if self.available:
                    self.available = False
                    log_event(log, logging.ERROR, "breaker store unavailable; agents go local",
                              error=str(e))
                    self.tell_mode(agent_pb2.BREAKER_MODE_LOCAL, "breaker store unavailable")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.1
            if not self.available:
                await self._recover()
            await self._propagate(events)

    async def _propagate(self, events: list[BreakerEvent]) -> None:
        """Push transitions read from the stream (those not pushed already)."""
        now = self._clock()
        for event in events:
            if self._first_sighting(event):
                await self._push(event, now)

    async def _push(self, event: BreakerEvent, now: float) -> None:
        """Offer the transition to every session holding the breaker, then log and count it.

        The offers wake the sessions' writers; this task then yields once, so the
        writers put the update on the wire before it goes on with the log line,
        the metrics and its next store read (none of which the agents wait for).
        """
        self._generations[event.key] = event.generation
        holders = self._interest.get(event.key)
        if holders:
            await self._offer(event, now, holders)
            await asyncio.sleep(0)
        self._metrics.observe_transition(event, now)
        log_event(log, logging.INFO,
                  f'Circuit breaker "{event.key.display_name}" changed state from '
                  f"{event.from_state.value} to {event.to_state.value}",
                  breaker=event.key.encode(), generation=event.generation,
                  cause=event.cause.value, instance=event.instance_id,
                  holders=len(holders) if holders else 0)

    async def _offer(self, event: BreakerEvent, now: float, holders: set[AgentSession]) -> None:
        if event.cause in (TransitionCause.OVERRIDE, TransitionCause.RESET):
            # The event does not carry the override itself: send the full state.
            snapshot = await self.store.get(event.key)
            if snapshot is None:
                return
            serialized = update_from_snapshot(snapshot, now, event.cause)
        else:
            serialized = update_from_event(event, now)
        for session in list(holders):
            session.offer_update(event.key, serialized)
        self.convergence.offered(event.key, event.generation, event.at,
                                 (s for s in holders if s.acks_updates),
                                 self._converged[event.to_state])

    async def _recover(self) -> None:
        self.available = True
        log_event(log, logging.INFO, "breaker store reachable again; agents back to cluster mode")
        self.tell_mode(agent_pb2.BREAKER_MODE_CLUSTER, "breaker store reachable")
        for session in self._policies.sessions():
            with contextlib.suppress(StoreUnavailable):
                await self.send_current_state(session, list(session.interest))
