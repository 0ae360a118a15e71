"""What the agent tells the server beyond outcomes: acks of breaker updates, rejections.

A ``ClusterSync`` attached to a real agent's registry, as in
``test_cluster_adopt``: ``on_update`` is what the link calls when an update
arrives, ``take_messages`` what the flusher would send. The last test runs the
flusher on a real loop to show acks are batched, not written one per update.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress

from google.protobuf import duration_pb2

from fusebox.agent import Agent, BreakerOpenError
from fusebox.agent._cluster import ClusterConfig, ClusterSync
from fusebox.agent._reporting import decode_runs
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy, ResolvedPolicies, TargetKind, TargetPolicy
from fusebox.agent.testing import ManualClock
from fusebox.v1 import agent_pb2, breaker_pb2
from tests.support.eventually import eventually_async

CB = CircuitBreakerPolicy("simpleCB", max_requests=1, timeout=5.0, trip="consecutiveFailures >= 3")
POLICIES = ResolvedPolicies("default", "checkout", (
    TargetPolicy(TargetKind.APP, "order-processor", circuit_breaker=CB,
                 spec_namespace="prod", spec_name="resiliency"),
))
OPEN = breaker_pb2.BREAKER_STATE_OPEN
CLOSED = breaker_pb2.BREAKER_STATE_CLOSED


def key(method: str = "orders") -> BreakerKey:
    return BreakerKey("prod", "resiliency", TargetKind.APP, "order-processor", method)


class Fixture:
    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.clock = ManualClock()
        self.fb = Agent(app_id="checkout", clock=self.clock, policies=POLICIES)
        self.cluster = ClusterSync(self.fb._registry, config)

    def connect(self) -> agent_pb2.ConnectRequest:
        return self.cluster.session_started(None)  # type: ignore[arg-type]

    def call(self, ok: bool = True, method: str = "orders") -> str:
        def op() -> str:
            if not ok:
                raise ConnectionError("upstream down")
            return "ok"

        try:
            return self.fb.app("order-processor", method=method).call(op)
        except BreakerOpenError:
            return "rejected"
        except ConnectionError:
            return "failed"

    def push(self, state: int, generation: int, method: str = "orders",
             remaining: float = 30.0) -> bool:
        d = duration_pb2.Duration()
        d.FromNanoseconds(int(remaining * 1e9))
        return self.cluster.on_update(agent_pb2.BreakerUpdate(
            key=key(method).to_proto(), state=state, generation=generation, open_remaining=d))

    def take(self) -> list[agent_pb2.ConnectRequest]:
        return self.cluster.take_messages()


def acks(messages: list[agent_pb2.ConnectRequest]) -> list[tuple[BreakerKey, int]]:
    return [(BreakerKey.from_proto(a.key), a.generation)
            for m in messages if m.HasField("breaker_acks") for a in m.breaker_acks.acks]


def entries(messages: list[agent_pb2.ConnectRequest]) -> list[agent_pb2.BreakerOutcomes]:
    return [e for m in messages if m.HasField("report") for e in m.report.breakers]


# -- acks ------------------------------------------------------------------------------


def test_every_interest_message_says_the_agent_acks_updates() -> None:
    fx = Fixture()
    fx.call()
    assert fx.connect().interest.acks_updates
    fx.call(method="refunds")  # a new breaker: announced by the next flush
    (interest,) = [m.interest for m in fx.take() if m.HasField("interest")]
    assert interest.acks_updates and len(interest.add) == 1


def test_an_applied_update_is_acked_once_with_its_generation() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.take()
    assert fx.push(OPEN, 7)
    assert acks(fx.take()) == [(key(), 7)]
    assert acks(fx.take()) == []  # sent once, not again at the next flush


def test_updates_between_two_flushes_share_one_message_and_each_breaker_acks_its_newest() -> None:
    fx = Fixture()
    fx.call()
    fx.call(method="refunds")
    fx.connect()
    fx.take()
    assert fx.push(OPEN, 3)
    assert fx.push(OPEN, 2, method="refunds")
    assert fx.push(CLOSED, 4)
    messages = fx.take()
    assert sum(m.HasField("breaker_acks") for m in messages) == 1
    assert sorted(acks(messages), key=str) == sorted(
        [(key(), 4), (key("refunds"), 2)], key=str)


def test_a_repeated_update_is_acked_too_the_agent_holds_that_generation() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    assert fx.push(OPEN, 5)
    fx.take()
    assert not fx.push(OPEN, 5)  # a repeat changes nothing here...
    assert acks(fx.take()) == [(key(), 5)]  # ...but the server may still wait for it


def test_updates_for_breakers_not_held_or_while_not_following_are_not_acked() -> None:
    fx = Fixture()
    fx.call()
    assert not fx.push(OPEN, 5)  # not connected: not following the fleet
    fx.connect()
    assert not fx.push(OPEN, 6, method="unknown-method")
    assert acks(fx.take()) == []


def test_acks_not_sent_when_the_stream_ends_are_dropped() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    assert fx.push(OPEN, 5)
    fx.cluster.session_ended()
    fx.connect()
    assert acks(fx.take()) == []  # the next server sends its own updates


async def test_the_flusher_sends_a_burst_of_acks_in_one_message_soon_after_the_first() -> None:
    fx = Fixture(ClusterConfig(report_interval=5.0, ack_delay=0.01))
    fx.call()
    fx.cluster.bind(asyncio.get_running_loop())
    fx.connect()
    fx.take()
    sent: list[agent_pb2.ConnectRequest] = []

    async def send(message: agent_pb2.ConnectRequest) -> None:
        sent.append(message)

    flusher = asyncio.create_task(fx.cluster.run_flusher(send))
    try:
        for generation in (3, 4, 5):  # as the reader takes them in, one by one
            assert fx.push(OPEN if generation % 2 else CLOSED, generation)
            await asyncio.sleep(0)
        # The report interval is 5 s: only the ack timer can have woken the flusher.
        await eventually_async(lambda: bool(sent), deadline=2.0, what="acks sent")
        await asyncio.sleep(0.05)
    finally:
        flusher.cancel()
        with suppress(asyncio.CancelledError):
            await flusher
    assert [m.WhichOneof("message") for m in sent] == ["breaker_acks"]
    assert acks(sent) == [(key(), 5)]


# -- rejections -------------------------------------------------------------------------


def test_calls_an_open_fleet_rejects_are_reported_as_rejections_not_outcomes() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.take()
    fx.push(OPEN, 2)
    assert [fx.call() for _ in range(3)] == ["rejected"] * 3
    (entry,) = entries(fx.take())
    assert entry.rejected == 3 and list(entry.runs) == []
    assert entries(fx.take()) == []  # counted once


def test_rejections_of_the_instances_own_open_breaker_ride_on_its_outcome_entry() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.take()
    assert [fx.call(ok=False) for _ in range(3)] == ["failed"] * 3  # trips locally
    assert fx.call() == "rejected"
    (entry,) = entries(fx.take())
    assert decode_runs(entry.runs) == [False] * 3 and entry.rejected == 1


def test_rejections_are_not_counted_while_running_locally() -> None:
    fx = Fixture()
    for _ in range(3):
        fx.call(ok=False)
    assert fx.call() == "rejected"
    fx.connect()
    assert entries(fx.take()) == []
