"""Hostile reports: random OutcomeReport messages and random bytes fed to the
server's report path raise only the documented errors and never break it.

Bounded in time: a fixed number of examples each, no deadline per example.
"""

from __future__ import annotations

import asyncio
import functools

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server.engines.breaker_hub import (
    MAX_BREAKERS_PER_REPORT,
    MAX_RUNS_PER_REPORT,
    BreakerHub,
    ReportError,
)
from fusebox.controlplane.server.engines.policy_hub import PolicyHub
from fusebox.controlplane.server.engines.sessions import AgentSession
from fusebox.controlplane.server.metrics import Metrics
from fusebox.controlplane.spec_store.embedded import MEMORY, EmbeddedSpecStore
from fusebox.v1 import agent_pb2, policy_pb2, spec_pb2
from tests.support.specs import SEED_SPEC

BOUNDED = settings(max_examples=150, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_SINT32 = st.integers(-(2**31), 2**31 - 1)  # runs are sint32 on the wire
_NAMES = st.sampled_from(["default", "myresiliency", "order-processor", "orders", "", "a/b",
                          "{x}", " ", "é"]) | st.text(max_size=20)
_KEYS = st.builds(
    policy_pb2.BreakerKey, namespace=_NAMES, spec=_NAMES,
    kind=st.integers(-3, 10), target=_NAMES, method=_NAMES,
)
_ENTRIES = st.builds(
    agent_pb2.BreakerOutcomes, key=_KEYS,
    runs=st.lists(_SINT32 | st.integers(-5, 5), max_size=30),
    lease_id=st.sampled_from(["", "lease-1"]) | st.text(max_size=10),
)
_REPORTS = st.builds(agent_pb2.OutcomeReport, breakers=st.lists(_ENTRIES, max_size=8),
                     sequence=st.integers(0, 2**64 - 1))


@functools.cache
def seed_policies() -> policy_pb2.ResolvedPolicies:
    """What app `checkout` gets from the seed spec (so some random keys are held)."""
    async def resolve() -> policy_pb2.ResolvedPolicies:
        store = EmbeddedSpecStore(MEMORY)
        from fusebox.controlplane.spec import parse_documents
        from fusebox.controlplane.spec_store.base import SpecWrite

        (doc,) = parse_documents(SEED_SPEC)
        await store.apply([SpecWrite(doc.spec.namespace, doc.spec.name, doc.yaml, doc.document,
                                     doc.digest)])
        policies, _ = await PolicyHub(store).resolve("default", "checkout")
        await store.close()
        return policies
    return asyncio.run(resolve())


def seeded_hub() -> tuple[BreakerHub, AgentSession]:
    hub = BreakerHub(EmbeddedBreakerStore(), PolicyHub(EmbeddedSpecStore(MEMORY)), Metrics())
    session = AgentSession("default", "checkout", "fuzz-1", "ipv4:127.0.0.1:1")
    session.offer_snapshot(seed_policies(), 1)
    return hub, session


def ingest_and_apply(report: agent_pb2.OutcomeReport) -> None:
    hub, session = seeded_hub()
    store = hub.store
    try:
        hub.ingest(session, report)
    except ReportError:
        return  # documented: the stream is closed
    # What was accepted must apply cleanly to the store, as the aggregator would.
    asyncio.run(store.apply(hub._take_batches()))


@BOUNDED
@given(_REPORTS)
def test_random_reports_raise_only_report_errors_and_apply_cleanly(
    report: agent_pb2.OutcomeReport,
) -> None:
    ingest_and_apply(report)


@BOUNDED
@given(st.binary(max_size=2048))
def test_random_bytes_either_fail_to_decode_or_are_handled(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    try:
        request = agent_pb2.ConnectRequest.FromString(data)
    except DecodeError:
        return  # grpc answers INTERNAL "failed to deserialize"; the server is not involved
    if request.WhichOneof("message") == "report":
        ingest_and_apply(request.report)


@pytest.mark.parametrize(("breakers", "runs"), [
    (MAX_BREAKERS_PER_REPORT, 1), (MAX_BREAKERS_PER_REPORT + 1, 1),
    (1, MAX_RUNS_PER_REPORT), (1, MAX_RUNS_PER_REPORT + 1),
])
def test_reports_at_the_size_bounds_are_taken_and_past_them_refused_whole(
    breakers: int, runs: int,
) -> None:
    key = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                                kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                                method="orders")
    entry = agent_pb2.BreakerOutcomes(key=key, runs=[1, -1] * (runs // 2) + [1] * (runs % 2))
    report = agent_pb2.OutcomeReport(breakers=[entry] * breakers)
    hub, session = seeded_hub()
    if breakers <= MAX_BREAKERS_PER_REPORT and runs <= MAX_RUNS_PER_REPORT:
        hub.ingest(session, report)
        [batch] = hub._take_batches()  # one breaker: its entries merged, in order
        assert sum(abs(run) for run in batch.runs) == breakers * runs
        return
    with pytest.raises(ReportError, match="at most"):
        hub.ingest(session, report)
    assert hub._take_batches() == []  # nothing of it was queued


def test_a_report_with_one_entry_past_the_bound_is_refused_whole() -> None:
    key = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                                kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                                method="orders")
    good = agent_pb2.BreakerOutcomes(key=key, runs=[1])
    long = agent_pb2.BreakerOutcomes(key=key, runs=[1, -1] * MAX_RUNS_PER_REPORT)
    hub, session = seeded_hub()
    with pytest.raises(ReportError, match="runs for one breaker"):
        hub.ingest(session, agent_pb2.OutcomeReport(breakers=[good, good, long]))
    assert hub._take_batches() == []  # not even the good entries before it


async def test_garbage_on_a_real_stream_leaves_the_server_serving() -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://")
    async with FuseboxServer(config) as server, grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}"
    ) as channel:
        from fusebox.v1 import spec_pb2_grpc

        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
        raw = channel.stream_stream("/fusebox.v1.AgentService/Connect",
                                    request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
        hello = agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            app_id="checkout", instance_id="garbage")).SerializeToString()
        for payload in (b"\xff\xff\xff", b"\x12\x05\x0a\x03\x0a\x01", b"\x00" * 64):
            call = raw()
            await call.write(hello)
            await call.write(payload)
            try:
                async with asyncio.timeout(10):
                    while await call.read() is not grpc.aio.EOF:
                        pass
            except grpc.aio.AioRpcError as e:
                assert e.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED,
                                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    grpc.StatusCode.INVALID_ARGUMENT), e
            except TimeoutError:
                call.cancel()  # still open: the payload decoded and was ignored
        answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
