"""Never looser than local, whatever the fleet knows: a property test.

Several agents share one fleet breaker kept by a real ``EmbeddedBreakerStore``
(the server's state machine). Random policies (with or without retries),
random outcomes spread over the agents, random time steps, reports flushed to
the store at random moments and the store's updates delivered to each agent
after random delays; operators set and clear overrides and reset now and then.

Each agent has a *twin*: a plain per-instance ``BreakerStateMachine`` (Dapr's
breaker) consulted on the same attempts and fed the same outcomes. Checked on
every attempt:

* an agent never admits an attempt its twin would reject (never looser than
  local), outside operator overrides, which are absolute by design;
* an agent never admits an attempt the fleet state it has received forbids
  (open and not yet timed out, or forced open).

Everything runs in one thread with a manual clock; the store's coroutines run
on a private event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusebox.agent import Agent, BreakerOpenError, BreakerState
from fusebox.agent._cluster_port import LeaseAnswer
from fusebox.agent._live_breaker import Breaker
from fusebox.agent._reporting import ReportLimits, outcome_entries
from fusebox.agent.breaker import BreakerOverride, BreakerStateMachine, TransitionCause
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    ResolvedPolicies,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
)
from fusebox.agent.testing import ManualClock
from fusebox.agent.trip import compile_trip
from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.breakers.model import BreakerEvent, BreakerSnapshot, OutcomeBatch

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
NAME = "order-processor:orders"


@dataclass(frozen=True)
class Update:
    """A BreakerUpdate as the server serialises it when it pushes (remaining at push time)."""

    state: BreakerState
    generation: int
    open_remaining: float | None
    override: BreakerOverride | None
    cause: TransitionCause | None


class Server:
    """The control plane's breaker side, step by step: the real embedded store."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.store = EmbeddedBreakerStore(clock=lambda: clock.now)
        self.loop = asyncio.new_event_loop()
        self.position = ""
        self.links: list[Link] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def publish(self) -> None:
        """Every new event becomes an update queued for every agent (delivered later)."""
        self.position, events = self.run(self.store.read_events(self.position))
        for event in events:
            update = self._update(event)
            for link in self.links:
                link.inbox.append(update)

    def _update(self, event: BreakerEvent) -> Update:
        # The server sends the full state after an operator's action.
        if event.cause in (TransitionCause.OVERRIDE, TransitionCause.RESET):
            return self.update_from(self.run(self.store.get(event.key)), event.cause)
        return Update(event.to_state, event.generation, self._remaining(event.open_until),
                      None, event.cause)

    def update_from(
        self, snapshot: BreakerSnapshot, cause: TransitionCause | None = None
    ) -> Update:
        override = snapshot.override.override if snapshot.override else None
        return Update(snapshot.state, snapshot.generation,
                      self._remaining(snapshot.open_until if snapshot.state is OPEN else None),
                      override, cause)

    def _remaining(self, open_until: float | None) -> float | None:
        return None if open_until is None else max(0.0, open_until - self.clock.now)

    def generation(self, key: BreakerKey) -> int:
        snapshot = self.run(self.store.get(key))
        return 0 if snapshot is None else snapshot.generation


@dataclass
class Link:
    """One agent's side of the stream (the ``ClusterPort`` its breakers see)."""

    server: Server
    instance: str
    inbox: list[Update] = field(default_factory=list)
    probes: list[tuple[BreakerKey, str, int, bool]] = field(default_factory=list)
    breakers: list[Breaker] = field(default_factory=list)
    following: bool = True

    def wake(self) -> None:
        pass

    def report_probe(self, key: BreakerKey, lease_id: str, generation: int,
                     success: bool) -> None:
        self.probes.append((key, lease_id, generation, success))

    def lease_sync(self, key: BreakerKey, generation: int) -> LeaseAnswer | None:
        breaker = self.breakers[0]
        grant = self.server.run(self.server.store.acquire_lease(
            key, breaker.policy, self.instance, 60.0))
        self.server.publish()
        return LeaseAnswer(grant.granted, grant.lease_id, grant.state, grant.generation)

    async def lease_async(self, key: BreakerKey, generation: int) -> LeaseAnswer | None:
        raise AssertionError("the sync agent asks for leases synchronously")

    def breaker_created(self, breaker: Breaker) -> None:
        self.breakers.append(breaker)
        breaker.follow(self)
        # The interest it announces is answered with the current state, if any (later).
        assert breaker.key is not None
        snapshot = self.server.run(self.server.store.get(
            breaker.key))
        if snapshot is not None:
            self.inbox.append(self.server.update_from(snapshot))

    def breaker_dropped(self, breaker: Breaker) -> None:
        breaker.follow(None)

    def flush(self) -> None:
        """Send this agent's reports; the server drops outcomes of an older generation."""
        batches = [OutcomeBatch(k, self.breakers[0].policy,
                                (1 if ok else -1,), self.instance, lease)
                   for k, lease, _, ok in self.probes]
        self.probes.clear()
        for breaker in self.breakers:
            assert breaker.key is not None
            key = breaker.key
            for entry in outcome_entries(breaker.key.to_proto(), breaker.take_outcomes()[0],
                                         ReportLimits()):
                if entry.generation >= self.server.generation(key):
                    batches.append(OutcomeBatch(key, breaker.policy, tuple(entry.runs),
                                                self.instance))
        if batches:
            self.server.run(self.server.store.apply(batches))
            self.server.publish()


class Instance:
    """An agent, its link, its twin, and what the fleet has told it so far."""

    def __init__(self, index: int, server: Server, policies: ResolvedPolicies,
                 cb: CircuitBreakerPolicy, clock: ManualClock) -> None:
        self.link = Link(server, f"checkout-{index}")
        server.links.append(self.link)
        self.fb = Agent(app_id="checkout", clock=clock, policies=policies)
        self.fb._registry.cluster = self.link  # type: ignore[assignment]
        self.clock = clock
        self.cb = cb
        self.twin = self._machine()
        self.has: Update | None = None  # the newest update delivered (by generation)
        self.has_open_until: float | None = None  # its open end, on the agent's clock

    def _machine(self) -> BreakerStateMachine:
        cb = self.cb
        return BreakerStateMachine(max_requests=cb.max_requests, interval=cb.interval,
                                   timeout=cb.timeout, trip=compile_trip(cb.trip),
                                   now=self.clock.now)

    def deliver(self, count: int) -> None:
        for update in self.link.inbox[:count]:
            for breaker in self.link.breakers:
                breaker.apply_fleet(update.state, update.generation, update.open_remaining,
                                    update.override, update.cause)
            if self.link.breakers and (self.has is None
                                       or update.generation >= self.has.generation):
                if update.cause is TransitionCause.RESET:
                    self.twin = self._machine()  # an operator reset restarts both
                self.has = update
                self.has_open_until = (None if update.open_remaining is None
                                       else self.clock.now + update.open_remaining)
        del self.link.inbox[:count]

    def overridden(self) -> bool:
        return self.has is not None and self.has.override is not None

    def fleet_forbids(self, now: float) -> bool:
        has = self.has
        if has is None:
            return False
        if has.override is not None:
            return has.override is BreakerOverride.FORCE_OPEN
        until = self.has_open_until
        return has.state is OPEN and until is not None and not until < now

    def call(self, success: bool) -> None:
        def attempt() -> str:
            now = self.clock.now
            assert not self.fleet_forbids(now), "admitted an attempt the fleet forbids"
            if not self.overridden():
                assert _admits(self.twin, now), "looser than its per-instance twin"
                generation = self.twin.before_request(now)
                assert generation is not None
                self.twin.after_request(generation, success, now)
            if not success:
                raise ConnectionError("upstream down")
            return "ok"

        try:
            self.fb.app("order-processor", method="orders").call(attempt)
        except BreakerOpenError:
            if not self.overridden():
                self.twin.current_state(self.clock.now)  # the twin sees the attempt too
        except ConnectionError:
            pass


def _admits(machine: BreakerStateMachine, now: float) -> bool:
    state = machine.current_state(now)
    if state is HALF_OPEN:
        return machine.counts.requests < machine.max_requests
    return state is CLOSED


_TRIPS = st.builds("{} {} {}".format,
                   st.sampled_from(["consecutiveFailures", "totalFailures"]),
                   st.sampled_from([">", ">="]), st.integers(1, 4))
_POLICIES = st.builds(
    lambda max_requests, interval, timeout, trip: CircuitBreakerPolicy(
        "cb", max_requests=max_requests, interval=interval, timeout=timeout, trip=trip),
    st.integers(1, 3), st.sampled_from([0.0, 0.0, 2.0, 3.5]), st.sampled_from([1.0, 2.5, 4.0]),
    _TRIPS,
)
_CALL = st.tuples(st.just("call"), st.integers(0, 3), st.booleans())
_STEP = st.one_of(
    _CALL, _CALL,
    st.tuples(st.just("call"), st.integers(0, 3), st.just(False)),
    st.tuples(st.just("time"), st.integers(1, 8).map(lambda quarters: quarters / 4)),
    st.tuples(st.just("flush"), st.integers(0, 3)),
    st.tuples(st.just("deliver"), st.integers(0, 3), st.integers(1, 4)),
    st.tuples(st.just("override"), st.sampled_from([None, *BreakerOverride])),
    st.tuples(st.just("reset")),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cb=_POLICIES, retries=st.sampled_from([None, 0, 2]), agents=st.integers(2, 4),
       steps=st.lists(_STEP, min_size=4, max_size=80))
def test_connected_agents_are_never_looser_than_local_nor_than_what_the_fleet_said(
    cb: CircuitBreakerPolicy, retries: int | None, agents: int, steps: list[tuple[Any, ...]],
) -> None:
    clock = ManualClock(start=1_700_000_000.0)
    retry = None if retries is None else RetryPolicy("retry", duration=0.0, max_retries=retries)
    target = TargetPolicy(TargetKind.APP, "order-processor", circuit_breaker=cb, retry=retry,
                          spec_namespace="default", spec_name="resiliency")
    policies = ResolvedPolicies(namespace="default", app_id="checkout", targets=(target,))
    server = Server(clock)
    fleet = [Instance(i, server, policies, cb, clock) for i in range(agents)]
    key = BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "orders")
    try:
        for step in steps:
            kind = step[0]
            if kind == "call":
                fleet[step[1] % agents].call(step[2])
            elif kind == "time":
                clock.advance(step[1])
                server.run(server.store.advance())
                server.publish()
            elif kind == "flush":
                fleet[step[1] % agents].link.flush()
            elif kind == "deliver":
                fleet[step[1] % agents].deliver(step[2])
            elif server.run(server.store.get(key)) is not None:  # operators act on known ones
                if kind == "override":
                    server.run(server.store.set_override(key, step[1], reason="test", ttl=None,
                                                         set_by="op"))
                else:
                    server.run(server.store.reset(key, reason="test", set_by="op"))
                server.publish()
    finally:
        server.loop.close()
