"""Operator overrides on breakers no agent has used yet, and on every method of a
target, through a real in-process control plane (both stores) and a raw agent
stream: what is created, what is refused and why, what agents are sent, what
the audit log says."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest

from fusebox.v1 import (
    agent_pb2,
    audit_pb2,
    audit_pb2_grpc,
    breaker_pb2,
    breaker_pb2_grpc,
    policy_pb2,
    spec_pb2,
    spec_pb2_grpc,
)
from tests.controlplane.limits.conftest import connect
from tests.support.specs import SEED_SPEC

DEADLINE = 10.0
USER = (("x-fusebox-user", "alice@ops"),)
OPEN = breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN


def key(target: str = "order-processor", method: str = "orders", spec: str = "myresiliency",
        kind: policy_pb2.TargetKind.ValueType = policy_pb2.TARGET_KIND_APP
        ) -> policy_pb2.BreakerKey:
    return policy_pb2.BreakerKey(namespace="default", spec=spec, kind=kind, target=target,
                                 method=method)


@pytest.fixture
async def stub(channel: grpc.aio.Channel) -> breaker_pb2_grpc.BreakerServiceStub:
    await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
        spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
    return breaker_pb2_grpc.BreakerServiceStub(channel)


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def audit_events(channel: grpc.aio.Channel) -> list[audit_pb2.AuditEvent]:
    answer = await audit_pb2_grpc.AuditServiceStub(channel).ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(target_kind=audit_pb2.AUDIT_TARGET_KIND_BREAKER))
    return list(answer.events)


async def next_update(
    call: grpc.aio.StreamStreamCall, wanted: Callable[[agent_pb2.BreakerUpdate], bool]
) -> agent_pb2.BreakerUpdate:
    async with asyncio.timeout(DEADLINE):
        while True:
            message = await call.read()
            if message.WhichOneof("message") == "breaker_update" and wanted(
                message.breaker_update
            ):
                update: agent_pb2.BreakerUpdate = message.breaker_update
                return update


def interest(*keys: policy_pb2.BreakerKey) -> agent_pb2.ConnectRequest:
    return agent_pb2.ConnectRequest(interest=agent_pb2.BreakerInterest(add=list(keys)))


async def test_an_override_ahead_of_use_creates_the_breaker_with_its_stored_policy(
    stub: breaker_pb2_grpc.BreakerServiceStub, channel: grpc.aio.Channel
) -> None:
    answer = await stub.SetOverride(breaker_pb2.SetOverrideRequest(
        key=key(), override=OPEN, reason="db migration"), metadata=USER)
    breaker = answer.breaker
    assert (breaker.state, breaker.generation) == (breaker_pb2.BREAKER_STATE_OPEN, 1)
    assert (breaker.policy.name, breaker.policy.trip, breaker.policy.timeout.seconds) == (
        "simpleCB", "consecutiveFailures >= 5", 5)
    assert breaker.override.reason == "db migration"
    [event] = await audit_events(channel)
    assert (event.target, event.previous) == ("order-processor:orders", "none")
    assert event.current.startswith("state open, generation 1, override force-open")
    assert event.detail == "reason: db migration; created ahead of use (no agent had used it)"


async def test_overrides_ahead_of_use_are_refused_unless_a_stored_spec_binds_the_key(
    stub: breaker_pb2_grpc.BreakerServiceStub,
) -> None:
    no_spec = await refused(stub.SetOverride(breaker_pb2.SetOverrideRequest(
        key=key(spec="nospec"), override=OPEN, reason="r")))
    assert no_spec.code() == grpc.StatusCode.NOT_FOUND
    assert no_spec.details() == (
        "no spec default/nospec is stored: a breaker no agent has used takes its policy from "
        "the stored spec that binds it; apply the spec first; specs that bind one to app "
        "'order-processor': default/myresiliency")
    unbound = await refused(stub.SetOverride(breaker_pb2.SetOverrideRequest(
        key=key("order-procesor"), override=OPEN, reason="r")))
    assert unbound.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert unbound.details() == (
        "spec default/myresiliency binds no circuit breaker to app 'order-procesor' (did you "
        "mean 'order-processor'?); it binds one to: app order-processor")
    clearing = await refused(stub.SetOverride(breaker_pb2.SetOverrideRequest(key=key())))
    assert clearing.code() == grpc.StatusCode.NOT_FOUND
    target_unbound = await refused(stub.SetOverride(breaker_pb2.SetOverrideRequest(
        key=key("payments", ""), override=OPEN, reason="r", all_methods=True)))
    assert target_unbound.code() == grpc.StatusCode.FAILED_PRECONDITION
    with_method = await refused(stub.SetOverride(breaker_pb2.SetOverrideRequest(
        key=key(), override=OPEN, reason="r", all_methods=True)))
    assert with_method.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "key.method: must be empty with all_methods" in (with_method.details() or "")
    listed = await stub.ListBreakers(breaker_pb2.ListBreakersRequest())
    assert (list(listed.breakers), list(listed.target_overrides)) == ([], [])


async def test_every_method_reaches_agents_holding_a_breaker_and_breakers_used_later(
    stub: breaker_pb2_grpc.BreakerServiceStub, channel: grpc.aio.Channel
) -> None:
    call = await connect(channel, "checkout-ahead")
    try:
        # The agent holds order-processor:orders, which exists (it reported on it).
        await call.write(agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(
            breakers=[agent_pb2.BreakerOutcomes(key=key(), runs=[3])], sequence=1)))
        async with asyncio.timeout(DEADLINE):
            while not (await stub.ListBreakers(breaker_pb2.ListBreakersRequest())).breakers:  # noqa: ASYNC110 - polls RPCs
                await asyncio.sleep(0.01)
        await call.write(interest(key()))
        await next_update(call, lambda u: u.key == key())

        answer = await stub.SetOverride(breaker_pb2.SetOverrideRequest(
            key=key(method=""), override=OPEN, reason="maintenance", all_methods=True),
            metadata=USER)
        assert [b.display_name for b in answer.breakers] == ["order-processor:orders"]
        assert answer.target_override.target == key(method="")
        assert answer.target_override.override.override == OPEN

        held = await next_update(call, lambda u: u.key == key())
        assert (held.state, held.override, held.cause) == (
            breaker_pb2.BREAKER_STATE_OPEN, OPEN, breaker_pb2.TRANSITION_CAUSE_OVERRIDE)
        # A breaker the agent starts using now gets the override with the interest's answer.
        await call.write(interest(key(method="refunds")))
        later = await next_update(call, lambda u: u.key == key(method="refunds"))
        assert (later.state, later.override, later.generation) == (
            breaker_pb2.BREAKER_STATE_OPEN, OPEN, 1)

        listed = await stub.ListBreakers(breaker_pb2.ListBreakersRequest(app_id="order-processor"))
        assert sorted(b.display_name for b in listed.breakers) == [
            "order-processor:orders", "order-processor:refunds"]
        [rule] = listed.target_overrides
        assert (rule.target, rule.override.reason) == (key(method=""), "maintenance")

        cleared = await stub.SetOverride(breaker_pb2.SetOverrideRequest(
            key=key(method=""), all_methods=True, reason="done"), metadata=USER)
        assert not cleared.HasField("target_override")
        assert all(not b.HasField("override") or b.override.override == 0
                   for b in cleared.breakers)
        released: set[str] = set()
        while released != {"orders", "refunds"}:  # in either order: two partitions
            update = await next_update(
                call, lambda u: u.override == breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED)
            assert update.state == breaker_pb2.BREAKER_STATE_CLOSED
            released.add(update.key.method)
    finally:
        call.cancel()
    cleared_entry, set_entry, *_ = await audit_events(channel)
    assert (set_entry.target, set_entry.target_key) == (
        "order-processor:*", "default/myresiliency/app/order-processor")
    assert (set_entry.previous, set_entry.current) == (
        "none", "override force-open (maintenance) on every breaker")
    assert set_entry.detail == "reason: maintenance; every method: 1 of 1 existing breaker(s) " \
                               "changed"
    assert cleared_entry.current == "none"
    assert cleared_entry.detail == "reason: done; every method: 2 of 2 existing breaker(s) changed"
