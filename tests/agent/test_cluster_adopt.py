"""Cluster mode without a network: breaker keys, adopted states, overrides, mode switches.

A ``ClusterSync`` with no event loop is attached to a real agent's registry;
``session_started`` / ``session_ended`` / ``on_update`` / ``on_mode`` are what
the link calls when messages arrive. Leases cannot be asked without a loop, so
half-open decisions here are the local fallback's.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import duration_pb2

from fusebox.agent import Agent, BreakerOpenError, BreakerState
from fusebox.agent._cluster import ClusterSync
from fusebox.agent._cluster_port import LeaseAnswer
from fusebox.agent._reporting import decode_runs
from fusebox.agent.breaker import TransitionCause
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.events import ChangeOrigin, StateChangeEvent
from fusebox.agent.policy import (
    BreakerScope,
    CircuitBreakerPolicy,
    Direction,
    ResolvedPolicies,
    TargetKind,
    TargetPolicy,
)
from fusebox.agent.testing import ManualClock
from fusebox.v1 import agent_pb2, breaker_pb2

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
CB = CircuitBreakerPolicy("simpleCB", max_requests=1, timeout=5.0, trip="consecutiveFailures >= 3")


def target(kind: TargetKind, name: str = "", **kwargs: Any) -> TargetPolicy:
    return TargetPolicy(kind, name, circuit_breaker=CB, spec_namespace="prod",
                        spec_name="resiliency", **kwargs)


def resolved(*targets: TargetPolicy) -> ResolvedPolicies:
    return ResolvedPolicies(namespace="default", app_id="checkout", targets=targets)


class Fixture:
    def __init__(self, *targets: TargetPolicy) -> None:
        self.clock = ManualClock()
        targets = targets or (target(TargetKind.APP, "order-processor"),)
        self.fb = Agent(app_id="checkout", clock=self.clock, policies=resolved(*targets))
        self.cluster = ClusterSync(self.fb._registry)
        self.events: list[StateChangeEvent] = []
        self.fb.on_state_change(self.events.append)
        self.calls = 0

    def connect(self) -> agent_pb2.ConnectRequest:
        return self.cluster.session_started(None)  # type: ignore[arg-type]

    def call(self, ok: bool = True, app: str = "order-processor", method: str = "orders") -> str:
        def op() -> str:
            self.calls += 1
            if not ok:
                raise ConnectionError("upstream down")
            return "ok"

        try:
            return self.fb.app(app, method=method).call(op)
        except BreakerOpenError:
            return "rejected"
        except ConnectionError:
            return "failed"

    def state(self, name: str = "order-processor:orders") -> BreakerState:
        return self.fb.breaker_states()[name]

    def push(self, state: int, generation: int, *, remaining: float = 0.0,
             override: int = 0, method: str = "orders") -> bool:
        d = duration_pb2.Duration()
        d.FromNanoseconds(int(remaining * 1e9))
        key = BreakerKey("prod", "resiliency", TargetKind.APP, "order-processor", method)
        return self.cluster.on_update(agent_pb2.BreakerUpdate(
            key=key.to_proto(), state=state, generation=generation, open_remaining=d,
            override=override,
        ))

    def reported(self) -> list[bool]:
        return [ok for m in self.cluster.take_messages() if m.HasField("report")
                for e in m.report.breakers for ok in decode_runs(e.runs)]


# -- keys ------------------------------------------------------------------------------


def keys_of(fb: Agent) -> dict[str, BreakerKey | None]:
    return {b.name: b.key for b in fb._registry.breakers()}


def test_app_breakers_are_keyed_by_spec_called_app_and_method_also_under_a_default_slot() -> None:
    fx = Fixture(target(TargetKind.APP, "order-processor"),
                 target(TargetKind.APP, is_default=True))
    fx.call(method="orders")
    fx.call(app="inventory", method="")
    assert keys_of(fx.fb) == {
        "order-processor:orders": BreakerKey("prod", "resiliency", TargetKind.APP,
                                             "order-processor", "orders"),
        "inventory": BreakerKey("prod", "resiliency", TargetKind.APP, "inventory", ""),
    }


@pytest.mark.parametrize(("scope", "expected"), [
    (BreakerScope.TYPE, {"cart": ""}),
    (BreakerScope.ID, {"cart-42": "42"}),
    (BreakerScope.BOTH, {"cart-42": "42"}),  # daprd keys "both" as "id"
])
def test_actor_breakers_are_keyed_by_type_and_id_when_id_scoped(
    scope: BreakerScope, expected: dict[str, str]
) -> None:
    fx = Fixture(target(TargetKind.ACTOR, "cart", circuit_breaker_scope=scope))
    fx.fb.actor("cart", "42").call(lambda: None)
    assert keys_of(fx.fb) == {
        name: BreakerKey("prod", "resiliency", TargetKind.ACTOR, "cart", method)
        for name, method in expected.items()
    }


def test_component_breakers_are_keyed_by_name_and_direction() -> None:
    fx = Fixture(target(TargetKind.COMPONENT, "statestore", direction=Direction.INBOUND))
    fx.fb.component("statestore", "inbound").call(lambda: None)
    assert keys_of(fx.fb) == {"statestore": BreakerKey(
        "prod", "resiliency", TargetKind.COMPONENT, "statestore", "inbound")}


def test_breaker_key_round_trips_through_the_wire_message() -> None:
    key = BreakerKey("prod", "resiliency", TargetKind.ACTOR, "cart", "42")
    assert BreakerKey.from_proto(key.to_proto()) == key
    assert str(key) == "prod/resiliency/actor/cart/42"


# -- adopted states ----------------------------------------------------------------------


def test_connecting_announces_every_live_breaker() -> None:
    fx = Fixture()
    fx.call()
    interest = fx.connect().interest
    assert [BreakerKey.from_proto(k) for k in interest.add] == [
        BreakerKey("prod", "resiliency", TargetKind.APP, "order-processor", "orders")]


def test_in_cluster_mode_the_instance_opens_on_its_own_crossing_failure_and_reports_it() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    assert [fx.call(ok=False) for _ in range(5)] == ["failed"] * 3 + ["rejected"] * 2
    assert fx.state() is OPEN
    assert fx.reported() == [False] * 3
    assert [(e.from_state, e.to_state, e.origin, e.cause) for e in fx.events] == [
        (CLOSED, OPEN, ChangeOrigin.LOCAL, TransitionCause.TRIP)]


def test_an_open_update_rejects_calls_without_running_them_and_is_logged_as_a_transition() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    assert fx.push(breaker_pb2.BREAKER_STATE_OPEN, 7, remaining=2.0)
    assert fx.call() == "rejected"
    assert fx.calls == 1
    assert fx.fb.stats()["order-processor:orders"].rejected == 1
    assert [(e.from_state, e.to_state) for e in fx.events] == [(CLOSED, OPEN)]
    fx.clock.advance(2.5)  # the remaining open time ran out: half-open, as on the server
    assert fx.state() is HALF_OPEN


def test_a_stale_update_is_ignored_and_a_repeated_one_changes_nothing() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    assert fx.push(breaker_pb2.BREAKER_STATE_OPEN, 7, remaining=30.0)
    assert not fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 6)
    assert not fx.push(breaker_pb2.BREAKER_STATE_OPEN, 7, remaining=30.0)
    assert fx.state() is OPEN
    assert fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 9)
    assert fx.call() == "ok"
    assert [(e.from_state, e.to_state) for e in fx.events] == [(CLOSED, OPEN), (OPEN, CLOSED)]


def test_a_closed_fleet_never_reopens_what_the_instance_itself_holds_open() -> None:
    fx = Fixture()
    for _ in range(3):
        fx.call(ok=False)  # not connected: trips by itself
    assert fx.state() is OPEN
    fx.connect()
    assert fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 1)
    assert fx.call() == "rejected"
    fx.clock.advance(5.5)  # its own open timeout: its own half-open probe
    assert fx.call() == "ok"
    assert fx.state() is CLOSED


def test_outcomes_are_reported_under_the_fleet_generation_their_call_was_admitted_in() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    breaker = fx.fb.breaker("order-processor:orders")
    assert breaker is not None
    token = breaker.acquire()  # a call in flight while the fleet state changes
    fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 3)
    breaker.release(token, False)
    fx.call(ok=True)
    entries = [e for m in fx.cluster.take_messages() if m.HasField("report")
               for e in m.report.breakers]
    # The server drops the first as stale (admitted before generation 3).
    assert [(e.generation, list(e.runs)) for e in entries] == [(0, [-1]), (3, [1])]


@pytest.mark.parametrize(("override", "expected"), [
    (breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN, "rejected"),
    (breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED, "ok"),
    (breaker_pb2.BREAKER_OVERRIDE_DISABLED, "ok"),
])
def test_overrides_act_as_open_or_closed_whatever_the_state(override: int, expected: str) -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.push(breaker_pb2.BREAKER_STATE_OPEN, 4, remaining=1.0, override=override)
    fx.clock.advance(3600)  # a forced state never times out
    assert fx.call() == expected


def test_a_disabled_breaker_reports_nothing_and_a_force_closed_one_does() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 2, override=breaker_pb2.BREAKER_OVERRIDE_DISABLED)
    fx.call(ok=False)
    assert fx.reported() == []
    fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 3,
            override=breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED)
    fx.call(ok=False)
    assert fx.reported() == [False]


def test_a_rejected_report_stops_reporting_that_breaker() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    key = BreakerKey("prod", "resiliency", TargetKind.APP, "order-processor", "orders")
    fx.cluster.on_rejected(agent_pb2.ReportRejected(key=key.to_proto(), reason="no policy"))
    fx.call(ok=False)
    assert fx.reported() == []


def test_a_rejection_naming_no_breaker_is_budget_usage_logged_once_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    reason = "report.budgets[0].interval: 0s is outside (0, 1h]"
    with caplog.at_level("WARNING", logger="fusebox.agent.cluster"):
        for _ in range(3):
            fx.cluster.on_rejected(agent_pb2.ReportRejected(reason=reason))
    assert [r.getMessage() for r in caplog.records] == [
        f"control plane rejected budget usage: {reason}"]
    fx.call(ok=False)
    assert fx.reported() == [False]  # the breakers' outcomes still go


# -- modes -----------------------------------------------------------------------------


def test_disconnected_breakers_run_locally_from_the_adopted_state() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.push(breaker_pb2.BREAKER_STATE_OPEN, 5, remaining=2.0)
    fx.cluster.session_ended()
    assert fx.state() is OPEN  # kept as the starting point
    fx.clock.advance(2.5)
    assert fx.call() == "ok"  # the local half-open probe
    assert fx.state() is CLOSED
    for _ in range(3):
        fx.call(ok=False)
    assert fx.state() is OPEN  # the local algorithm trips by itself again
    assert fx.reported() == []  # nothing accumulates while local


def test_mode_change_local_then_cluster_switches_and_reannounces_interest() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.cluster.on_mode(agent_pb2.ModeChange(mode=agent_pb2.BREAKER_MODE_LOCAL, reason="redis"))
    assert not fx.cluster.following
    for _ in range(3):
        fx.call(ok=False)
    assert fx.state() is OPEN
    answer = fx.cluster.on_mode(agent_pb2.ModeChange(mode=agent_pb2.BREAKER_MODE_CLUSTER))
    assert answer is not None and len(answer.interest.add) == 1
    assert fx.cluster.following
    fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 8)
    assert fx.call() == "rejected"  # its own breaker is still open
    fx.clock.advance(5.5)
    assert fx.call() == "ok"


def test_an_override_ends_when_the_agent_stops_following_the_fleet() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.push(breaker_pb2.BREAKER_STATE_OPEN, 5, override=breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN)
    assert fx.call() == "rejected"
    fx.cluster.session_ended()
    assert fx.call() == "ok"  # its own breaker is closed


def test_half_open_without_a_lease_answer_decides_locally() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    fx.push(breaker_pb2.BREAKER_STATE_HALF_OPEN, 6)
    # No loop, no stub: the lease cannot be asked, the local half-open admits maxRequests.
    assert fx.call() == "ok"
    assert fx.call() == "rejected"


def test_new_breakers_follow_the_cluster_and_are_announced_at_the_next_flush() -> None:
    fx = Fixture()
    fx.connect()
    fx.call()
    messages = fx.cluster.take_messages()
    assert [BreakerKey.from_proto(k).method for k in messages[0].interest.add] == ["orders"]
    for _ in range(3):
        fx.call(ok=False)
    assert fx.state() is OPEN


def test_force_closed_on_a_closed_fleet_admits_an_instance_whose_own_breaker_is_open() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    for _ in range(3):
        fx.call(ok=False)
    assert fx.call() == "rejected"  # its own breaker opened; the fleet is closed
    fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 1,
            override=breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED)
    assert [fx.call(ok=False) for _ in range(5)] == ["failed"] * 5  # absolute: admitted
    assert fx.events[-1].origin is ChangeOrigin.OPERATOR
    fx.push(breaker_pb2.BREAKER_STATE_CLOSED, 2)  # cleared: its own breaker resumes, open
    assert fx.call() == "rejected"


def test_a_probe_running_when_the_agent_stops_following_still_reaches_its_own_breaker() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    for _ in range(3):
        fx.call(ok=False)
    fx.clock.advance(5.5)  # its own breaker is half-open: one probe
    fx.push(breaker_pb2.BREAKER_STATE_HALF_OPEN, 2)
    breaker = fx.fb.breaker("order-processor:orders")
    assert breaker is not None
    token = breaker._admit_with(LeaseAnswer(True, "lease-1"))  # granted: a fleet probe
    fx.cluster.session_ended()
    breaker.release(token, True)
    assert fx.state() is CLOSED  # the probe's success closed its own breaker
    assert fx.call() == "ok"


def test_a_new_connection_reports_again_what_the_last_one_refused() -> None:
    fx = Fixture()
    fx.call()
    fx.connect()
    key = BreakerKey("prod", "resiliency", TargetKind.APP, "order-processor", "orders")
    fx.cluster.on_rejected(agent_pb2.ReportRejected(key=key.to_proto(), reason="no policy"))
    fx.call(ok=False)
    assert fx.reported() == []
    fx.cluster.session_ended()
    fx.connect()
    fx.call(ok=False)
    assert fx.reported() == [False]
