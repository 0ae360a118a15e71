"""Cluster mode over a real Connect stream, against a scripted in-process AgentService.

``ScriptedAgentService`` is a real gRPC server (sync, in its own threads) that
implements just ``AgentService``: it sends one policy snapshot per stream,
records every request, pushes what a test puts in its outbox, and answers
``AcquireProbeLease`` as scripted (grant, deny, or never answer in time).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError, BreakerState
from fusebox.agent._reporting import decode_runs
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    ResolvedPolicies,
    TargetKind,
    TargetPolicy,
    resolved_to_proto,
)
from fusebox.v1 import agent_pb2, agent_pb2_grpc, breaker_pb2
from tests.support.eventually import eventually_async

DEADLINE = 10.0
KEY = BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "orders")
CB = CircuitBreakerPolicy("simpleCB", max_requests=1, timeout=30.0,
                          trip="consecutiveFailures >= 3")
POLICIES = ResolvedPolicies("default", "checkout", (
    TargetPolicy(TargetKind.APP, "order-processor", circuit_breaker=CB,
                 spec_namespace="default", spec_name="resiliency"),
))
END_STREAM = object()


class ScriptedAgentService(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.requests: list[agent_pb2.ConnectRequest] = []
        self.lease_requests: list[agent_pb2.AcquireProbeLeaseRequest] = []
        self.streams = 0
        self.outbox: queue.Queue[Any] = queue.Queue()
        #: What AcquireProbeLease answers; None: hold the call until ``release_leases``.
        self.lease_answer: agent_pb2.AcquireProbeLeaseResponse | None = None
        self.release_leases = threading.Event()
        #: (RPC, its ``authorization`` metadata or None), call by call.
        self.authorizations: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def _note_authorization(self, rpc: str, context: grpc.ServicerContext) -> None:
        value = dict(context.invocation_metadata()).get("authorization")
        with self._lock:
            self.authorizations.append((rpc, None if value is None else str(value)))

    def Connect(self, request_iterator: Iterator[agent_pb2.ConnectRequest],
                context: grpc.ServicerContext) -> Iterator[agent_pb2.ConnectResponse]:
        self._note_authorization("Connect", context)
        threading.Thread(target=self._read, args=(request_iterator,), daemon=True).start()
        with self._lock:
            self.streams += 1
        yield agent_pb2.ConnectResponse(snapshot=agent_pb2.PolicySnapshot(
            policies=resolved_to_proto(POLICIES)))
        while context.is_active():
            try:
                message = self.outbox.get(timeout=0.05)
            except queue.Empty:
                continue
            if message is END_STREAM:
                return
            yield message

    def _read(self, requests: Iterator[agent_pb2.ConnectRequest]) -> None:
        try:
            for request in requests:
                with self._lock:
                    self.requests.append(request)
        except grpc.RpcError:
            pass

    def AcquireProbeLease(self, request: agent_pb2.AcquireProbeLeaseRequest,
                          context: grpc.ServicerContext) -> agent_pb2.AcquireProbeLeaseResponse:
        self._note_authorization("AcquireProbeLease", context)
        with self._lock:
            self.lease_requests.append(request)
        if self.lease_answer is None:
            self.release_leases.wait(DEADLINE)
            return agent_pb2.AcquireProbeLeaseResponse(granted=True, lease_id="too-late")
        return self.lease_answer

    # -- what the agent sent --------------------------------------------------------------

    def sent(self, kind: str) -> list[Any]:
        with self._lock:
            return [getattr(r, kind) for r in self.requests if r.WhichOneof("message") == kind]

    def reported(self) -> list[tuple[bool, str]]:
        """Every reported outcome for KEY in order, with its lease id."""
        return [(ok, e.lease_id) for report in self.sent("report") for e in report.breakers
                if BreakerKey.from_proto(e.key) == KEY for ok in decode_runs(e.runs)]

    def interested(self) -> list[BreakerKey | None]:
        return [BreakerKey.from_proto(k) for i in self.sent("interest") for k in i.add]

    def push(self, state: int, generation: int, remaining: float = 0.0) -> None:
        update = agent_pb2.BreakerUpdate(key=KEY.to_proto(), state=state, generation=generation)
        update.open_remaining.FromNanoseconds(int(remaining * 1e9))
        self.outbox.put(agent_pb2.ConnectResponse(breaker_update=update))


@pytest.fixture
def service() -> Iterator[tuple[ScriptedAgentService, int]]:
    svc = ScriptedAgentService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(svc, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield svc, port
    svc.release_leases.set()
    server.stop(grace=None)


class Driver:
    """A sync Agent or an AsyncAgent behind one blocking-or-awaitable interface."""

    def __init__(self, mode: str, port: int, tmp_path: Path,
                 report_interval: float = 0.005, **extra: Any) -> None:
        self.mode = mode
        kwargs: dict[str, Any] = {
            "app_id": "checkout", "server": f"127.0.0.1:{port}",
            "cache_path": tmp_path / "policies.pb", "report_interval": report_interval,
            "probe_lease_timeout": 0.1, "instance_id": "checkout-1", **extra,
        }
        self.fb: Agent | AsyncAgent = (Agent if mode == "sync" else AsyncAgent)(**kwargs)
        self.calls = 0

    async def start(self) -> None:
        if isinstance(self.fb, Agent):
            self.fb.start()
        else:
            await self.fb.start()
        await eventually_async(lambda: self.fb.policies is not None and self.following())

    async def stop(self) -> None:
        if isinstance(self.fb, Agent):
            self.fb.close()
        else:
            await self.fb.aclose()

    def following(self) -> bool:
        cluster = self.fb._link.cluster
        return cluster is not None and bool(cluster.following)

    async def call(self, ok: bool = True) -> str:
        def op() -> str:
            self.calls += 1
            if not ok:
                raise ConnectionError("upstream down")
            return "ok"

        async def aop() -> str:
            return op()

        try:
            if isinstance(self.fb, Agent):
                return self.fb.app("order-processor", method="orders").call(op)
            return await self.fb.app("order-processor", method="orders").call(aop)
        except BreakerOpenError:
            return "rejected"
        except ConnectionError:
            return "failed"

    def state(self) -> BreakerState:
        return self.fb.breaker_states()["order-processor:orders"]

    def fleet_generation(self) -> int | None:
        breaker = self.fb.breaker("order-processor:orders")
        fleet = None if breaker is None else breaker.fleet
        return None if fleet is None else fleet.generation




@pytest.fixture(params=["sync", "async"])
async def driven(request: pytest.FixtureRequest, service: tuple[ScriptedAgentService, int],
                 tmp_path: Path) -> Any:
    svc, port = service
    driver = Driver(request.param, port, tmp_path)
    await driver.start()
    yield svc, driver
    await driver.stop()


async def test_interest_then_outcomes_are_reported_in_completion_order(driven: Any) -> None:
    svc, d = driven
    for ok in (True, True, False, True, False, False):
        await d.call(ok)
    await eventually_async(lambda: KEY in svc.interested())
    await eventually_async(lambda: len(svc.reported()) == 6)
    assert svc.reported() == [(ok, "") for ok in (True, True, False, True, False, False)]
    sequences = [r.sequence for r in svc.sent("report")]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert d.state() is BreakerState.CLOSED  # three local failures do not trip in cluster mode


async def test_an_open_update_makes_every_call_fail_fast_locally(driven: Any) -> None:
    svc, d = driven
    await d.call()
    svc.push(breaker_pb2.BREAKER_STATE_OPEN, 4, remaining=30.0)
    await eventually_async(lambda: d.state() is BreakerState.OPEN)
    assert [await d.call() for _ in range(3)] == ["rejected"] * 3
    assert d.calls == 1
    assert d.fb.stats()["order-processor:orders"].rejected == 3


async def test_a_granted_lease_runs_the_probe_and_reports_it_under_the_lease(driven: Any) -> None:
    svc, d = driven
    await d.call()
    svc.lease_answer = agent_pb2.AcquireProbeLeaseResponse(granted=True, lease_id="L1")
    svc.push(breaker_pb2.BREAKER_STATE_HALF_OPEN, 5)
    await eventually_async(lambda: d.state() is BreakerState.HALF_OPEN)
    assert await d.call(ok=False) == "failed"
    assert d.calls == 2
    await eventually_async(lambda: (False, "L1") in svc.reported())
    (lease,) = svc.lease_requests
    assert (BreakerKey.from_proto(lease.key), lease.generation, lease.instance_id) == (
        KEY, 5, "checkout-1")
    assert {value for _, value in svc.authorizations} == {None}  # no token, no header


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_token_travels_on_the_stream_and_on_every_lease_request(
    mode: str, service: tuple[ScriptedAgentService, int], tmp_path: Path,
) -> None:
    # Plaintext loopback: the token is call metadata, not TLS-only call credentials.
    svc, port = service
    d = Driver(mode, port, tmp_path, token=" s3cret\n")
    await d.start()
    try:
        await d.call()
        svc.lease_answer = agent_pb2.AcquireProbeLeaseResponse(granted=True, lease_id="L1")
        svc.push(breaker_pb2.BREAKER_STATE_HALF_OPEN, 5)
        await eventually_async(lambda: d.state() is BreakerState.HALF_OPEN)
        assert await d.call() == "ok"
    finally:
        await d.stop()
    assert svc.authorizations == [("Connect", "Bearer s3cret"),
                                  ("AcquireProbeLease", "Bearer s3cret")]


async def test_a_denied_lease_rejects_the_call_without_running_it(driven: Any) -> None:
    svc, d = driven
    await d.call()
    svc.lease_answer = agent_pb2.AcquireProbeLeaseResponse(
        granted=False, state=breaker_pb2.BREAKER_STATE_HALF_OPEN, generation=5)
    svc.push(breaker_pb2.BREAKER_STATE_HALF_OPEN, 5)
    await eventually_async(lambda: d.state() is BreakerState.HALF_OPEN)
    assert await d.call() == "rejected"
    assert d.calls == 1


async def test_a_lease_past_its_deadline_is_decided_by_the_local_half_open(driven: Any) -> None:
    svc, d = driven
    await d.call()
    svc.lease_answer = None  # the server never answers within the 100 ms deadline
    svc.push(breaker_pb2.BREAKER_STATE_HALF_OPEN, 5)
    await eventually_async(lambda: d.state() is BreakerState.HALF_OPEN)
    assert await d.call() == "ok"  # the local half-open admits maxRequests (1)
    assert await d.call() == "rejected"
    assert d.calls == 2


async def test_a_lost_stream_goes_local_then_reconnects_and_reannounces(driven: Any) -> None:
    svc, d = driven
    await d.call()
    await eventually_async(lambda: KEY in svc.interested())
    svc.outbox.put(END_STREAM)
    await eventually_async(lambda: svc.streams == 2 and svc.interested().count(KEY) == 2)
    await eventually_async(d.following)
    svc.push(breaker_pb2.BREAKER_STATE_OPEN, 9, remaining=30.0)
    await eventually_async(lambda: d.state() is BreakerState.OPEN)


async def test_mode_local_lets_the_instance_trip_by_itself(driven: Any) -> None:
    svc, d = driven
    await d.call()
    svc.outbox.put(agent_pb2.ConnectResponse(mode=agent_pb2.ModeChange(
        mode=agent_pb2.BREAKER_MODE_LOCAL, reason="breaker store unavailable")))
    await eventually_async(lambda: not d.following())
    assert [await d.call(ok=False) for _ in range(4)] == ["failed"] * 3 + ["rejected"]
    svc.outbox.put(agent_pb2.ConnectResponse(mode=agent_pb2.ModeChange(
        mode=agent_pb2.BREAKER_MODE_CLUSTER)))
    await eventually_async(lambda: d.following() and svc.interested().count(KEY) == 2)
    svc.push(breaker_pb2.BREAKER_STATE_CLOSED, 12)
    await eventually_async(lambda: d.fleet_generation() == 12)
    # The fleet is closed, but this instance's own breaker stays open: never looser.
    assert d.state() is BreakerState.OPEN


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_failure_streak_that_trips_opens_at_once_and_is_reported_without_the_tick(
    mode: str, service: tuple[ScriptedAgentService, int], tmp_path: Path
) -> None:
    svc, port = service
    d = Driver(mode, port, tmp_path, report_interval=3600.0)  # the tick never comes
    await d.start()
    try:
        await d.call()
        assert [await d.call(ok=False) for _ in range(3)] == ["failed"] * 3  # trip: >= 3
        await eventually_async(lambda: len(svc.reported()) == 4)
        assert svc.reported() == [(True, ""), (False, ""), (False, ""), (False, "")]
        # ...and the instance opened by itself on the crossing failure.
        assert d.state() is BreakerState.OPEN
    finally:
        await d.stop()
