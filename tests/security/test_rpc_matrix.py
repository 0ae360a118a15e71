"""Every RPC of every service x {no token, wrong role, right role, agent of another app}.

The table below must list every method the server registers: a test compares
it with the services' descriptors, so a new RPC cannot go untested here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from fusebox.controlplane.server import ServerConfig
from fusebox.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    audit_pb2,
    audit_pb2_grpc,
    breaker_pb2,
    breaker_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    policy_pb2,
    registry_pb2,
    registry_pb2_grpc,
    spec_pb2,
    spec_pb2_grpc,
)
from tests.security.conftest import ServerThread, token_of, tokens_yaml
from tests.support.specs import SEED_SPEC

DEADLINE = 10.0
OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
HELD = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                             kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                             method="orders")
CHECKOUT_INSTANCE = "checkout-matrix-1"
Metadata = tuple[tuple[str, str], ...]


def bearer(name: str | None) -> Metadata:
    return () if name is None else (("authorization", f"Bearer {token_of(name)}"),)


def status_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as e:
        code: grpc.StatusCode = e.code()
        return code
    return OK


class AgentStream:
    """A raw Connect stream held open until ``close()``; ``status`` is how it started."""

    def __init__(self, channel: grpc.Channel, metadata: Metadata, app_id: str,
                 instance_id: str) -> None:
        self._done = threading.Event()
        hello = agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            namespace="default", app_id=app_id, instance_id=instance_id))

        def requests() -> Iterator[agent_pb2.ConnectRequest]:
            yield hello
            self._done.wait(DEADLINE)

        self._call = agent_pb2_grpc.AgentServiceStub(channel).Connect(
            requests(), metadata=metadata, timeout=DEADLINE)
        try:
            first = next(self._call)
            assert first.WhichOneof("message") == "snapshot"
            self.status = OK
        except grpc.RpcError as e:
            self.status = e.code()

    def close(self) -> None:
        self._done.set()
        self._call.cancel()


@dataclass(frozen=True)
class Env:
    channel: grpc.Channel


def _connect(env: Env, metadata: Metadata) -> grpc.StatusCode:
    stream = AgentStream(env.channel, metadata, "checkout", "checkout-matrix-probe")
    stream.close()
    return stream.status


def _lease(env: Env, metadata: Metadata) -> grpc.StatusCode:
    # The instance belongs to checkout; its stream is opened with checkout's own token.
    owner = AgentStream(env.channel, bearer("checkout-agents"), "checkout", CHECKOUT_INSTANCE)
    assert owner.status is OK
    try:
        return status_of(lambda: agent_pb2_grpc.AgentServiceStub(env.channel).AcquireProbeLease(
            agent_pb2.AcquireProbeLeaseRequest(instance_id=CHECKOUT_INSTANCE, key=HELD),
            metadata=metadata, timeout=DEADLINE))
    finally:
        owner.close()


def _watch(env: Env, metadata: Metadata) -> grpc.StatusCode:
    # Allowed watchers get no message (no breaker exists yet): the deadline ends the call.
    timeout = DEADLINE if metadata in DENIED_WATCHERS else 0.5
    stub = breaker_pb2_grpc.BreakerServiceStub(env.channel)
    return status_of(lambda: next(stub.WatchBreakers(
        breaker_pb2.WatchBreakersRequest(), metadata=metadata, timeout=timeout)))


def _unary(stub_type: type, method: str, request: object) -> Callable[[Env, Metadata],
                                                                        grpc.StatusCode]:
    def call(env: Env, metadata: Metadata) -> grpc.StatusCode:
        rpc = getattr(stub_type(env.channel), method)
        return status_of(lambda: rpc(request, metadata=metadata, timeout=DEADLINE))

    return call


Spec, Breaker = spec_pb2_grpc.SpecServiceStub, breaker_pb2_grpc.BreakerServiceStub
Registry = registry_pb2_grpc.RegistryServiceStub
CHECKOUT_SIDECAR = registry_pb2.AppInstance(instance_id="checkout-sidecar-1",
                                            address="127.0.0.1:6002")


@dataclass(frozen=True)
class Rpc:
    method: str  # /package.Service/Method
    call: Callable[[Env, Metadata], grpc.StatusCode]
    right: str  # a token whose role may call it
    wrong: str  # a token whose role may not


RPCS = [
    Rpc("/fusebox.v1.SpecService/ApplySpec",
        _unary(Spec, "ApplySpec", spec_pb2.ApplySpecRequest(yaml=SEED_SPEC, dry_run=True)),
        right="alice-admin", wrong="oscar-operator"),
    Rpc("/fusebox.v1.SpecService/GetSpec",
        _unary(Spec, "GetSpec", spec_pb2.GetSpecRequest(namespace="default", name="nope")),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.SpecService/ListSpecs",
        _unary(Spec, "ListSpecs", spec_pb2.ListSpecsRequest()),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.SpecService/DeleteSpec",
        _unary(Spec, "DeleteSpec", spec_pb2.DeleteSpecRequest(namespace="default", name="nope")),
        right="alice-admin", wrong="oscar-operator"),
    Rpc("/fusebox.v1.SpecService/ListSpecRevisions",
        _unary(Spec, "ListSpecRevisions",
               spec_pb2.ListSpecRevisionsRequest(namespace="default", name="myresiliency")),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.SpecService/RollbackSpec",
        _unary(Spec, "RollbackSpec", spec_pb2.RollbackSpecRequest(
            namespace="default", name="nope", to_revision=1)),
        right="alice-admin", wrong="oscar-operator"),
    Rpc("/fusebox.v1.SpecService/ResolvePolicies",
        _unary(Spec, "ResolvePolicies",
               spec_pb2.ResolvePoliciesRequest(namespace="default", app_id="checkout")),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.AgentService/Connect", _connect,
        right="checkout-agents", wrong="vera-viewer"),
    Rpc("/fusebox.v1.AgentService/AcquireProbeLease", _lease,
        right="checkout-agents", wrong="oscar-operator"),
    Rpc("/fusebox.v1.RegistryService/RegisterInstance",
        _unary(Registry, "RegisterInstance", registry_pb2.RegisterInstanceRequest(
            namespace="default", app_id="checkout", instance=CHECKOUT_SIDECAR)),
        right="checkout-agents", wrong="vera-viewer"),
    Rpc("/fusebox.v1.RegistryService/DeregisterInstance",
        _unary(Registry, "DeregisterInstance", registry_pb2.DeregisterInstanceRequest(
            namespace="default", app_id="checkout", instance_id="checkout-sidecar-1")),
        right="checkout-agents", wrong="oscar-operator"),
    Rpc("/fusebox.v1.RegistryService/ResolveApp",
        _unary(Registry, "ResolveApp", registry_pb2.ResolveAppRequest(
            namespace="default", app_id="order-processor", caller_app_id="checkout")),
        right="checkout-agents", wrong="vera-viewer"),
    Rpc("/fusebox.v1.BreakerService/ListBreakers",
        _unary(Breaker, "ListBreakers", breaker_pb2.ListBreakersRequest()),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.BreakerService/GetBreaker",
        _unary(Breaker, "GetBreaker", breaker_pb2.GetBreakerRequest(key=HELD)),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.BreakerService/WatchBreakers", _watch,
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.BreakerService/SetOverride",
        _unary(Breaker, "SetOverride", breaker_pb2.SetOverrideRequest(
            key=HELD, override=breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN, reason="matrix")),
        right="oscar-operator", wrong="vera-viewer"),
    Rpc("/fusebox.v1.BreakerService/ResetBreaker",
        _unary(Breaker, "ResetBreaker", breaker_pb2.ResetBreakerRequest(key=HELD, reason="m")),
        right="oscar-operator", wrong="vera-viewer"),
    Rpc("/fusebox.v1.AuditService/ListAuditEvents",
        _unary(audit_pb2_grpc.AuditServiceStub, "ListAuditEvents",
               audit_pb2.ListAuditEventsRequest()),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.BudgetService/ListBudgets",
        _unary(budget_pb2_grpc.BudgetServiceStub, "ListBudgets",
               budget_pb2.ListBudgetsRequest()),
        right="vera-viewer", wrong="checkout-agents"),
    Rpc("/fusebox.v1.BudgetService/GetBudget",
        _unary(budget_pb2_grpc.BudgetServiceStub, "GetBudget",
               budget_pb2.GetBudgetRequest(key=policy_pb2.BudgetKey(
                   namespace="default", spec="myresiliency",
                   kind=policy_pb2.BUDGET_KIND_RATE_LIMIT,
                   target_kind=policy_pb2.TARGET_KIND_APP, target="order-processor"))),
        right="vera-viewer", wrong="checkout-agents"),
]
DENIED_WATCHERS = {bearer(None), bearer("checkout-agents"), bearer("inventory-agents"),
                   (("authorization", "Bearer not-a-token"),)}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    directory = tmp_path_factory.mktemp("matrix")
    tokens = directory / "tokens.yaml"
    tokens.write_text(tokens_yaml())
    server = ServerThread(ServerConfig(listen="127.0.0.1:0", store_url="memory://",
                                       data_dir=Path(directory), tokens_file=tokens)).start()
    with grpc.insecure_channel(server.address) as channel:
        spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC), metadata=bearer("alice-admin"),
            timeout=DEADLINE)
        yield Env(channel)
    server.stop()


def test_the_matrix_covers_every_registered_rpc() -> None:
    descriptors = [spec_pb2, agent_pb2, breaker_pb2, audit_pb2, registry_pb2, budget_pb2]
    registered = {
        f"/{service.full_name}/{method.name}"
        for module in descriptors
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert {rpc.method for rpc in RPCS} == registered


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.method.rsplit("/", 1)[1])
def test_no_token_is_unauthenticated(env: Env, rpc: Rpc) -> None:
    assert rpc.call(env, bearer(None)) is UNAUTHENTICATED


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.method.rsplit("/", 1)[1])
def test_an_unknown_token_is_unauthenticated(env: Env, rpc: Rpc) -> None:
    assert rpc.call(env, (("authorization", "Bearer not-a-token"),)) is UNAUTHENTICATED


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.method.rsplit("/", 1)[1])
def test_a_role_without_the_right_is_denied(env: Env, rpc: Rpc) -> None:
    assert rpc.call(env, bearer(rpc.wrong)) is PERMISSION_DENIED


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.method.rsplit("/", 1)[1])
def test_the_right_role_passes_authorization(env: Env, rpc: Rpc) -> None:
    assert rpc.call(env, bearer(rpc.right)) not in (UNAUTHENTICATED, PERMISSION_DENIED)


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.method.rsplit("/", 1)[1])
def test_an_agent_of_another_app_is_denied(env: Env, rpc: Rpc) -> None:
    # inventory's token: no reads or writes, no Connect as checkout, no lease for
    # checkout's instance.
    assert rpc.call(env, bearer("inventory-agents")) is PERMISSION_DENIED


def test_an_admin_may_call_every_rpc(env: Env) -> None:
    for rpc in RPCS:
        assert rpc.call(env, bearer("alice-admin")) not in (UNAUTHENTICATED, PERMISSION_DENIED), (
            rpc.method
        )


def test_health_and_reflection_stay_open(env: Env) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    reply = health_pb2_grpc.HealthStub(env.channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=DEADLINE)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
