"""SpecService over real gRPC, against both stores."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from fusebox.controlplane.wire_errors import violations_from_rpc_error
from fusebox.v1 import policy_pb2, spec_pb2, spec_pb2_grpc
from tests.support.specs import SEED_SPEC_PATH as SEED_SPEC

SEED = SEED_SPEC.read_text()
Stub = spec_pb2_grpc.SpecServiceStub


async def apply(specs: Stub, text: str, **kw: object) -> spec_pb2.ApplySpecResponse:
    response: spec_pb2.ApplySpecResponse = await specs.ApplySpec(
        spec_pb2.ApplySpecRequest(yaml=text, source_name="resiliency.yaml", **kw)  # type: ignore[arg-type]
    )
    return response


async def test_seed_spec_applies_reads_back_and_resolves(specs: Stub) -> None:
    applied = await apply(specs, SEED)
    assert [(s.namespace, s.name, s.revision, s.changed) for s in applied.specs] == [
        ("default", "myresiliency", 1, True)
    ]
    got = (await specs.GetSpec(spec_pb2.GetSpecRequest(name="myresiliency"))).spec
    assert got.revision == 1 and got.yaml.strip() == SEED.strip()
    assert got.document["spec"]["policies"]["circuitBreakers"]["simpleCB"]["trip"] == (
        "consecutiveFailures >= 5"
    )
    checkout = (await specs.ResolvePolicies(spec_pb2.ResolvePoliciesRequest(app_id="checkout")))
    targets = [t for t in checkout.policies.targets if not t.is_default]
    assert [(t.kind, t.name) for t in targets] == [(policy_pb2.TARGET_KIND_APP, "order-processor")]
    assert targets[0].retry.name == "retryForever" and targets[0].retry.max_retries == -1
    assert targets[0].circuit_breaker.max_requests == 1
    assert targets[0].circuit_breaker.trip == "consecutiveFailures >= 5"
    other = await specs.ResolvePolicies(spec_pb2.ResolvePoliciesRequest(app_id="order-processor"))
    assert [t for t in other.policies.targets if not t.is_default] == []


async def test_reapplying_identical_content_is_a_noop(specs: Stub) -> None:
    await apply(specs, SEED)
    again = await apply(specs, SEED)
    assert (again.specs[0].revision, again.specs[0].changed) == (1, False)


async def test_invalid_spec_lists_every_error_and_stores_nothing(specs: Stub) -> None:
    bad = SEED.replace("timeout: 5s", "timeout: 5 seconds").replace(
        "maxRequests: 1", "maxRequests: -1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await apply(specs, bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = violations_from_rpc_error(info.value)
    assert {v.field_path for v in violations} == {
        "spec.policies.circuitBreakers.simpleCB.timeout",
        "spec.policies.circuitBreakers.simpleCB.maxRequests",
    }
    assert all(v.source == "resiliency.yaml" and v.line > 0 for v in violations)
    listed = await specs.ListSpecs(spec_pb2.ListSpecsRequest())
    assert list(listed.specs) == []


async def test_policy_names_are_checked_once_every_document_reads(specs: Stub) -> None:
    # A broken document may define the policies the others name, so names are
    # checked (across documents) once the documents themselves are valid.
    typo = SEED.replace("retry: retryForever", "retry: retryForevr")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await apply(specs, typo.replace("timeout: 5s", "timeout: 5 seconds"))
    [structural] = violations_from_rpc_error(info.value)
    assert structural.field_path == "spec.policies.circuitBreakers.simpleCB.timeout"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await apply(specs, typo)
    [name] = violations_from_rpc_error(info.value)
    assert (name.field_path, name.line) == ("spec.targets.apps.order-processor.retry", 25)
    assert "retryForever" in info.value.details()  # the did-you-mean reaches plain clients


async def test_multi_document_apply_is_all_or_nothing(specs: Stub) -> None:
    second = SEED.replace("name: myresiliency", "name: second").replace("5s", "5 parsecs")
    with pytest.raises(grpc.aio.AioRpcError):
        await apply(specs, SEED + "\n---\n" + second)
    assert list((await specs.ListSpecs(spec_pb2.ListSpecsRequest())).specs) == []
    ok = SEED.replace("name: myresiliency", "name: second")
    applied = await apply(specs, SEED + "\n---\n" + ok)
    assert sorted(s.name for s in applied.specs) == ["myresiliency", "second"]


async def test_expected_revision_conflicts_abort_and_write_nothing(specs: Stub) -> None:
    await apply(specs, SEED, expected_revision=0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await apply(specs, SEED.replace("5s", "6s"), expected_revision=0)
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert "revision" in (info.value.details() or "")
    changed = await apply(specs, SEED.replace("5s", "6s"), expected_revision=1)
    assert changed.specs[0].revision == 2
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await specs.DeleteSpec(spec_pb2.DeleteSpecRequest(name="myresiliency", expected_revision=1))
    assert stale.value.code() == grpc.StatusCode.ABORTED
    assert (await specs.GetSpec(spec_pb2.GetSpecRequest(name="myresiliency"))).spec.revision == 2


async def test_concurrent_appliers_never_lose_an_update(specs: Stub) -> None:
    await apply(specs, SEED)

    async def bump(i: int) -> None:
        text = SEED.replace("maxRequests: 1", f"maxRequests: {i + 2}")
        while True:
            current = (await specs.GetSpec(spec_pb2.GetSpecRequest(name="myresiliency"))).spec
            try:
                await apply(specs, text, expected_revision=current.revision)
                return
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.ABORTED

    await asyncio.gather(*(bump(i) for i in range(8)))
    history = await specs.ListSpecRevisions(spec_pb2.ListSpecRevisionsRequest(name="myresiliency"))
    assert [r.revision for r in history.revisions] == list(range(1, 10))


async def test_dry_run_reports_without_storing(specs: Stub) -> None:
    dry = await apply(specs, SEED, dry_run=True)
    assert (dry.specs[0].revision, dry.specs[0].changed) == (1, True)
    assert list((await specs.ListSpecs(spec_pb2.ListSpecsRequest())).specs) == []


async def test_delete_history_and_rollback(specs: Stub) -> None:
    await apply(specs, SEED)
    await apply(specs, SEED.replace("timeout: 5s", "timeout: 9s"))
    deleted = await specs.DeleteSpec(spec_pb2.DeleteSpecRequest(name="myresiliency"))
    assert deleted.revision == 3
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await specs.GetSpec(spec_pb2.GetSpecRequest(name="myresiliency"))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    rolled = await specs.RollbackSpec(spec_pb2.RollbackSpecRequest(name="myresiliency",
                                                                   to_revision=1))
    assert rolled.spec.revision == 4
    current = (await specs.GetSpec(spec_pb2.GetSpecRequest(name="myresiliency"))).spec
    assert "timeout: 5s" in current.yaml
    history = await specs.ListSpecRevisions(spec_pb2.ListSpecRevisionsRequest(name="myresiliency"))
    assert [r.action for r in history.revisions] == [
        spec_pb2.REVISION_ACTION_APPLY, spec_pb2.REVISION_ACTION_APPLY,
        spec_pb2.REVISION_ACTION_DELETE, spec_pb2.REVISION_ACTION_ROLLBACK,
    ]
    assert history.revisions[-1].rolled_back_to == 1
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await specs.RollbackSpec(spec_pb2.RollbackSpecRequest(name="myresiliency", to_revision=3))
    assert bad.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_structured_document_is_accepted(specs: Stub) -> None:
    doc = struct_pb2.Struct()
    doc.update({
        "apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency",
        "metadata": {"name": "structured", "namespace": "prod"},
        "spec": {"policies": {"retries": {"three": {"maxRetries": 3, "duration": 250}}},
                 "targets": {"apps": {"payments": {"retry": "three"}}}},
    })
    applied = await specs.ApplySpec(spec_pb2.ApplySpecRequest(document=doc))
    assert (applied.specs[0].namespace, applied.specs[0].name) == ("prod", "structured")
    resolved = await specs.ResolvePolicies(
        spec_pb2.ResolvePoliciesRequest(namespace="prod", app_id="anything")
    )
    (target,) = [t for t in resolved.policies.targets if t.name == "payments"]
    assert target.retry.max_retries == 3
    assert target.retry.duration.ToMilliseconds() == 250


@pytest.mark.parametrize(
    ("call", "request_", "code"),
    [
        ("GetSpec", spec_pb2.GetSpecRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("GetSpec", spec_pb2.GetSpecRequest(name="nope"), grpc.StatusCode.NOT_FOUND),
        ("DeleteSpec", spec_pb2.DeleteSpecRequest(name="nope"), grpc.StatusCode.NOT_FOUND),
        ("ListSpecRevisions", spec_pb2.ListSpecRevisionsRequest(name="nope"),
         grpc.StatusCode.NOT_FOUND),
        ("RollbackSpec", spec_pb2.RollbackSpecRequest(name="x"), grpc.StatusCode.INVALID_ARGUMENT),
        ("ResolvePolicies", spec_pb2.ResolvePoliciesRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("ApplySpec", spec_pb2.ApplySpecRequest(), grpc.StatusCode.INVALID_ARGUMENT),
        ("ApplySpec", spec_pb2.ApplySpecRequest(yaml="x" * (1024 * 1024 + 1)),
         grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_requests_get_precise_status_codes(
    specs: Stub, call: str, request_: object, code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await getattr(specs, call)(request_)
    assert info.value.code() == code
    assert info.value.details()


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "fusebox.v1.SpecService", "fusebox.v1.AgentService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = refl.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    answer = await call.read()
    await call.done_writing()
    names = {s.name for s in answer.list_services_response.service}
    assert {"fusebox.v1.SpecService", "fusebox.v1.AgentService", "grpc.health.v1.Health"} <= names


# ---- documents Dapr accepts: applied, warned about, resolved as daprd would -------------------

HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\n"
TARGETS = HEADER + """\
metadata: {name: targets}
spec:
  targets:
    apps:
      order-processor: {retry: retryForever, circuitBreaker: simpleCB}
"""
POLICIES = HEADER + """\
metadata: {name: policies}
spec:
  policies:
    retries:
      retryForever: {duration: 5s, maxRetries: -1}
    circuitBreakers:
      simpleCB: {maxRequests: 1, timeout: 5s, trip: consecutiveFailures >= 5}
"""


async def resolved_target(specs: Stub, app_id: str, name: str) -> policy_pb2.TargetPolicy:
    resolved = await specs.ResolvePolicies(spec_pb2.ResolvePoliciesRequest(app_id=app_id))
    (target,) = [t for t in resolved.policies.targets if t.name == name]
    return target


def files(*named: tuple[str, str]) -> list[spec_pb2.SpecFile]:
    return [spec_pb2.SpecFile(source_name=name, yaml=text) for name, text in named]


async def test_files_applied_together_may_name_each_others_policies(specs: Stub) -> None:
    applied = await specs.ApplySpec(spec_pb2.ApplySpecRequest(
        files=files(("targets.yaml", TARGETS), ("policies.yaml", POLICIES))
    ))
    assert sorted(s.name for s in applied.specs) == ["policies", "targets"]
    assert list(applied.warnings) == []
    target = await resolved_target(specs, "checkout", "order-processor")
    assert (target.retry.name, target.circuit_breaker.name) == ("retryForever", "simpleCB")
    assert target.spec_name == "targets"


async def test_a_target_may_name_a_policy_of_a_stored_document(specs: Stub) -> None:
    await apply(specs, POLICIES)
    applied = await apply(specs, TARGETS)
    assert applied.specs[0].changed and list(applied.warnings) == []
    target = await resolved_target(specs, "checkout", "order-processor")
    assert target.retry.max_retries == -1


async def test_a_policy_defined_nowhere_is_refused_with_its_line_and_nothing_is_stored(
    specs: Stub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await apply(specs, TARGETS)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = violations_from_rpc_error(info.value)
    assert [(v.field_path, v.line, v.severity) for v in violations] == [
        ("spec.targets.apps.order-processor.retry", 7, spec_pb2.VIOLATION_SEVERITY_ERROR),
        ("spec.targets.apps.order-processor.circuitBreaker", 7,
         spec_pb2.VIOLATION_SEVERITY_ERROR),
    ]
    assert "is not defined in any Resiliency document of namespace 'default'" in (
        violations[0].message
    )
    assert list((await specs.ListSpecs(spec_pb2.ListSpecsRequest())).specs) == []


async def test_files_applied_together_are_stored_all_or_nothing(specs: Stub) -> None:
    broken = POLICIES.replace("5s, maxRetries", "5 parsecs, maxRetries")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await specs.ApplySpec(spec_pb2.ApplySpecRequest(
            files=files(("targets.yaml", TARGETS), ("policies.yaml", broken))
        ))
    [violation] = violations_from_rpc_error(info.value)
    assert (violation.source, violation.line) == ("policies.yaml", 7)
    assert list((await specs.ListSpecs(spec_pb2.ListSpecsRequest())).specs) == []


async def test_warnings_come_back_with_line_and_path_and_the_spec_is_stored(specs: Stub) -> None:
    twice = SEED.replace("scopes:\n  - checkout\n", "scopes:\n  - checkout\n  - checkout\n")
    assert twice != SEED
    for dry_run in (True, False):
        applied = await apply(specs, twice, dry_run=dry_run)
        [warning] = applied.warnings
        assert warning.severity == spec_pb2.VIOLATION_SEVERITY_WARNING
        assert (warning.source, warning.field_path) == ("resiliency.yaml", "scopes[1]")
        assert (warning.line, warning.column) == (7, 5)
        assert "listed twice" in warning.message
    assert (await specs.GetSpec(spec_pb2.GetSpecRequest(name="myresiliency"))).spec.revision == 1
    target = await resolved_target(specs, "checkout", "order-processor")
    assert target.retry.name == "retryForever"


async def test_a_refusal_carries_the_warnings_found_beside_the_errors(specs: Stub) -> None:
    twice = SEED.replace("scopes:\n  - checkout\n", "scopes:\n  - checkout\n  - checkout\n")
    assert twice != SEED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await apply(specs, twice.replace("5s", "5 parsecs"))
    severities = [v.severity for v in violations_from_rpc_error(info.value)]
    assert severities[-1] == spec_pb2.VIOLATION_SEVERITY_WARNING
    assert set(severities[:-1]) == {spec_pb2.VIOLATION_SEVERITY_ERROR}
    assert "listed twice" not in (info.value.details() or "")  # the message lists errors


async def test_daprs_other_accepted_documents_apply_and_resolve_as_daprd(specs: Stub) -> None:
    text = HEADER + """\
metadata: {name: dapr-accepts}
spec:
  policies:
    retries:
      codes: {matching: {httpStatusCodes: "500,", gRPCStatusCodes: "14,"}}
    circuitBreakers:
      cb: {}
  targets:
    apps:
      order-processor: {retry: codes, circuitBreaker: cb, circuitBreakerCacheSize: 0}
      payments: {retry: DaprBuiltInServiceRetries}
    actors:
      Cart: {circuitBreaker: cb, circuitBreakerScope: id, circuitBreakerCacheSize: 0}
"""
    applied = await apply(specs, text)
    assert list(applied.warnings) == []
    orders = await resolved_target(specs, "any", "order-processor")
    assert [(r.first, r.last) for r in orders.retry.http_status_codes] == [(500, 500)]
    assert [(r.first, r.last) for r in orders.retry.grpc_status_codes] == [(14, 14)]
    assert orders.circuit_breaker_cache_size == 100
    cart = await resolved_target(specs, "any", "Cart")
    assert cart.circuit_breaker_cache_size == 5000
    payments = await resolved_target(specs, "any", "payments")
    assert (payments.retry.name, payments.retry.max_retries) == ("DaprBuiltInServiceRetries", 3)
    assert payments.retry.duration.ToMilliseconds() == 1000


async def test_a_target_taken_over_by_a_later_spec_is_a_warning_naming_the_winner(
    specs: Stub,
) -> None:
    later = SEED.replace("name: myresiliency", "name: zz-later").replace(
        "maxRequests: 1", "maxRequests: 2"
    )
    await apply(specs, later)
    applied = await apply(specs, SEED)
    by_path = {w.field_path: w for w in applied.warnings}
    target = by_path["spec.targets.apps.order-processor"]
    assert target.line == SEED.splitlines().index("      order-processor:") + 1
    assert "spec default/zz-later (stored) takes it over" in target.message
    assert "spec default/zz-later (stored) takes it over" in (
        by_path["spec.policies.circuitBreakers.simpleCB"].message
    )
    resolved = await resolved_target(specs, "checkout", "order-processor")
    assert (resolved.spec_name, resolved.circuit_breaker.max_requests) == ("zz-later", 2)


async def test_a_rollback_is_checked_against_the_documents_stored_now(specs: Stub) -> None:
    await specs.ApplySpec(spec_pb2.ApplySpecRequest(
        files=files(("targets.yaml", TARGETS), ("policies.yaml", POLICIES))
    ))
    await apply(specs, TARGETS.replace("retry: retryForever, ", ""))  # revision 2
    await specs.DeleteSpec(spec_pb2.DeleteSpecRequest(name="policies"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await specs.RollbackSpec(spec_pb2.RollbackSpecRequest(name="targets", to_revision=1))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field_path for v in violations_from_rpc_error(info.value)} == {
        "spec.targets.apps.order-processor.retry",
        "spec.targets.apps.order-processor.circuitBreaker",
    }
    await apply(specs, POLICIES.replace("name: policies", "name: policies-again"))
    rolled = await specs.RollbackSpec(spec_pb2.RollbackSpecRequest(name="targets", to_revision=1))
    assert (rolled.spec.revision, list(rolled.warnings)) == (3, [])
