"""Every spec change, rollback, override and reset lands in the audit log with
who, when, what and the previous value; dry runs and failures do not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import CircuitBreakerPolicy, TargetKind
from fusebox.controlplane.breakers.model import OutcomeBatch
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    breaker_pb2,
    breaker_pb2_grpc,
    spec_pb2,
    spec_pb2_grpc,
)
from tests.support.specs import SEED_SPEC

USER = (("x-fusebox-user", "alice"),)
BREAKER = BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "orders")


@pytest.fixture(params=["embedded", "redis"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FuseboxServer]:
    url = (f"sqlite:///{tmp_path / 'fusebox.sqlite3'}" if request.param == "embedded"
           else request.getfixturevalue("redis_url"))
    async with FuseboxServer(ServerConfig(listen="127.0.0.1:0", store_url=url)) as srv:
        yield srv


@pytest.fixture
async def channel(server: FuseboxServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


async def events(channel: grpc.aio.Channel, **filters: object) -> list[audit_pb2.AuditEvent]:
    stub = audit_pb2_grpc.AuditServiceStub(channel)
    response = await stub.ListAuditEvents(audit_pb2.ListAuditEventsRequest(**filters))  # type: ignore[arg-type]
    return list(response.events)


async def test_spec_apply_delete_and_rollback_are_recorded_with_the_previous_revision(
    channel: grpc.aio.Channel,
) -> None:
    specs = spec_pb2_grpc.SpecServiceStub(channel)
    started = time.time()
    await specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC, source_name="r.yaml"),
                          metadata=USER)
    changed = SEED_SPEC.replace("maxRequests: 1", "maxRequests: 2")
    assert changed != SEED_SPEC
    await specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=changed), metadata=USER)
    await specs.RollbackSpec(spec_pb2.RollbackSpecRequest(name="myresiliency", to_revision=1),
                             metadata=USER)
    await specs.DeleteSpec(spec_pb2.DeleteSpecRequest(name="myresiliency"), metadata=USER)

    delete, rollback, second, first = await events(channel)
    assert [e.action for e in (first, second, rollback, delete)] == [
        audit_pb2.AUDIT_ACTION_SPEC_APPLY, audit_pb2.AUDIT_ACTION_SPEC_APPLY,
        audit_pb2.AUDIT_ACTION_SPEC_ROLLBACK, audit_pb2.AUDIT_ACTION_SPEC_DELETE,
    ]
    for event in (first, second, rollback, delete):
        assert event.actor.startswith("alice")
        assert event.target == "default/myresiliency"
        assert event.target_kind == audit_pb2.AUDIT_TARGET_KIND_SPEC
        assert event.time.ToNanoseconds() / 1e9 >= started - 1
    assert first.previous == "none" and first.current.startswith("revision 1 (sha256:")
    assert second.previous == first.current and second.current.startswith("revision 2 ")
    assert rollback.previous == second.current
    assert rollback.current.startswith("revision 3 ") and "revision 1" in rollback.detail
    assert rollback.current.split(" ", 2)[2] == first.current.split(" ", 2)[2]  # same digest
    assert delete.previous == rollback.current and delete.current == "revision 4 (deleted)"


async def test_dry_runs_unchanged_applies_and_refused_changes_are_not_recorded(
    channel: grpc.aio.Channel,
) -> None:
    specs = spec_pb2_grpc.SpecServiceStub(channel)
    await specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC, dry_run=True))
    assert await events(channel) == []
    await specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
    await specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))  # identical: no change
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC.replace(
            "maxRequests: 1", "maxRequests: 2"), expected_revision=7))
    assert refused.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(grpc.aio.AioRpcError):
        await specs.DeleteSpec(spec_pb2.DeleteSpecRequest(name="no-such-spec"))
    assert len(await events(channel)) == 1


async def test_overrides_and_resets_are_recorded_with_the_previous_state(
    server: FuseboxServer, channel: grpc.aio.Channel,
) -> None:
    cb = CircuitBreakerPolicy("simpleCB", max_requests=1, interval=0, timeout=30,
                              trip="consecutiveFailures >= 2")
    await server.breaker_store.apply([OutcomeBatch(BREAKER, cb, (-2,), "instance-1")])
    breakers = breaker_pb2_grpc.BreakerServiceStub(channel)
    key = BREAKER.to_proto()
    await breakers.SetOverride(breaker_pb2.SetOverrideRequest(
        key=key, override=breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED, reason="hotfix deployed",
    ), metadata=USER)
    await breakers.ResetBreaker(breaker_pb2.ResetBreakerRequest(key=key, reason="all clear"),
                                metadata=USER)

    reset, override = await events(channel, target_kind=audit_pb2.AUDIT_TARGET_KIND_BREAKER)
    assert override.action == audit_pb2.AUDIT_ACTION_BREAKER_OVERRIDE
    assert override.actor.startswith("alice")
    assert override.target == "order-processor:orders"
    assert override.target_key == BREAKER.encode()
    assert override.previous.startswith("state open,") and "no override" in override.previous
    assert "override force-closed (hotfix deployed)" in override.current
    assert override.detail == "reason: hotfix deployed"
    assert reset.action == audit_pb2.AUDIT_ACTION_BREAKER_RESET
    assert reset.previous == override.current
    assert reset.current.startswith("state closed,") and "no override" in reset.current


async def test_a_limit_above_the_maximum_is_refused(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await events(channel, limit=5000)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "limit: at most 1000" in (refused.value.details() or "")
