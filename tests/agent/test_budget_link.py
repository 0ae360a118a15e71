"""Fleet budgets over a real Connect stream (docs/budgets.md, the agent's side of phase 2).

``ScriptedControlPlane`` is a real gRPC server on loopback that implements just
``AgentService.Connect`` the way the protocol says: it sends one snapshot per
stream, records what the agent sends and pushes what a test puts in its
outbox. It stands for a server of either age: one that pushes
``BudgetShares`` (what the test pushes) and one that predates them (a test
that pushes none). The last test runs against the real embedded control
plane. Agents run on a manual clock: their buckets see no time pass unless a
test moves it, so counts of admitted calls are exact whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from contextlib import suppress
from pathlib import Path
from typing import Any

import grpc
import pytest

from fusebox.agent import Agent, AsyncAgent, RateLimitedError
from fusebox.agent._budget_sync import USAGE_INTERVAL
from fusebox.agent.budget import BudgetKey, BudgetKind, BudgetShare, budget_key
from fusebox.agent.policy import (
    RateLimitPolicy,
    ResolvedPolicies,
    TargetKind,
    TargetPolicy,
    resolved_to_proto,
)
from fusebox.agent.testing import ManualClock
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    spec_pb2,
    spec_pb2_grpc,
)
from tests.support.eventually import eventually_async

LIMIT = RateLimitPolicy("ordersLimit", limit=10, period=1.0, burst=10)
TARGET = TargetPolicy(TargetKind.APP, "order-processor", rate_limit=LIMIT,
                      spec_namespace="default", spec_name="resiliency")
POLICIES = ResolvedPolicies("default", "checkout", (TARGET,))
KEY = budget_key(TARGET, BudgetKind.RATE_LIMIT, "checkout")


class ScriptedControlPlane(agent_pb2_grpc.AgentServiceServicer):
    def __init__(self) -> None:
        self.requests: list[agent_pb2.ConnectRequest] = []
        self.outbox: queue.Queue[agent_pb2.ConnectResponse] = queue.Queue()
        self._lock = threading.Lock()

    def Connect(self, request_iterator: Iterator[agent_pb2.ConnectRequest],
                context: grpc.ServicerContext) -> Iterator[agent_pb2.ConnectResponse]:
        threading.Thread(target=self._read, args=(request_iterator,), daemon=True).start()
        yield agent_pb2.ConnectResponse(snapshot=agent_pb2.PolicySnapshot(
            policies=resolved_to_proto(POLICIES), control_plane_id="cp-test"))
        while context.is_active():
            try:
                yield self.outbox.get(timeout=0.02)
            except queue.Empty:
                continue

    def _read(self, requests: Iterator[agent_pb2.ConnectRequest]) -> None:
        try:
            for request in requests:
                with self._lock:
                    self.requests.append(request)
        except grpc.RpcError:
            pass

    def push(self, *shares: BudgetShare) -> None:
        self.outbox.put(agent_pb2.ConnectResponse(
            budget_shares=agent_pb2.BudgetShares(shares=[s.to_proto() for s in shares])))

    def reports(self) -> list[agent_pb2.OutcomeReport]:
        with self._lock:
            return [r.report for r in self.requests if r.HasField("report")]

    def admitted(self) -> int:
        return sum(u.admitted for r in self.reports() for u in r.budgets
                   if BudgetKey.from_proto(u.key) == KEY)

    def acked(self) -> list[int]:
        return [a.generation for r in self.reports() for a in r.share_acks
                if BudgetKey.from_proto(a.key) == KEY]


@pytest.fixture
def control_plane() -> Iterator[tuple[ScriptedControlPlane, grpc.Server, int]]:
    service = ScriptedControlPlane()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, server, port
    server.stop(grace=None)


class Driver:
    """A sync Agent or an AsyncAgent on a manual clock, started and called alike."""

    def __init__(self, mode: str, port: int, cache: Path, **extra: Any) -> None:
        self.clock = ManualClock()
        kwargs: dict[str, Any] = {
            "app_id": "checkout", "server": f"127.0.0.1:{port}", "cache_path": cache,
            "report_interval": 0.005, "instance_id": "checkout-1", "clock": self.clock,
            **extra,
        }
        self.fb: Agent | AsyncAgent = (Agent if mode == "sync" else AsyncAgent)(**kwargs)

    async def start(self) -> None:
        if isinstance(self.fb, Agent):
            self.fb.start()
        else:
            await self.fb.start()

    async def stop(self) -> None:
        if isinstance(self.fb, Agent):
            self.fb.close()
        else:
            await self.fb.aclose()

    async def calls(self, n: int) -> list[str]:
        def op() -> str:
            return "ok"

        async def aop() -> str:
            return "ok"

        out = []
        handle = self.fb.app("order-processor", method="orders")
        for _ in range(n):
            try:
                if isinstance(self.fb, Agent):
                    out.append(handle.call(op))
                else:
                    out.append(await handle.call(aop))
            except RateLimitedError:
                out.append("refused")
        return out

    def share(self) -> float:
        return self.fb._budgets.share(KEY)


@pytest.fixture(params=["sync", "async"])
async def connected(request: pytest.FixtureRequest, tmp_path: Path,
                    control_plane: tuple[ScriptedControlPlane, grpc.Server, int],
                    ) -> AsyncIterator[tuple[ScriptedControlPlane, Driver]]:
    service, _, port = control_plane
    driver = Driver(request.param, port, tmp_path / "policies.pb")
    await driver.start()
    assert driver.fb.policies is not None
    yield service, driver
    await driver.stop()


async def test_usage_reaches_the_server_on_the_reports(
        connected: tuple[ScriptedControlPlane, Driver]) -> None:
    service, driver = connected
    await eventually_async(lambda: driver.fb._link.cluster.following)
    assert await driver.calls(4) == ["ok"] * 4
    driver.clock.advance(USAGE_INTERVAL)
    await eventually_async(lambda: service.admitted() == 4, what="4 admitted calls reported")
    entries = [u for r in service.reports() for u in r.budgets if u.admitted]
    assert [(u.admitted, u.refused, u.interval.ToNanoseconds()) for u in entries] == [
        (4, 0, round(USAGE_INTERVAL * 1e9))]


async def test_a_pushed_share_is_acked_and_enforced_at_once_without_a_burst(
        connected: tuple[ScriptedControlPlane, Driver]) -> None:
    service, driver = connected
    assert await driver.calls(2) == ["ok"] * 2  # 8 tokens left of the whole budget
    service.push(BudgetShare(KEY, 0.3, fleet_size=3, lease=60.0, generation=4))
    await eventually_async(lambda: service.acked() == [4], what="generation 4 acked")
    assert driver.share() == 0.3
    # Depth 3 (0.3 x 10): the 8 tokens are cut to 3; the clock stands still, so exactly 3 pass.
    assert await driver.calls(5) == ["ok"] * 3 + ["refused"] * 2


async def test_a_lease_not_renewed_returns_to_one_over_the_fleet_size(
        connected: tuple[ScriptedControlPlane, Driver]) -> None:
    service, driver = connected
    service.push(BudgetShare(KEY, 0.5, fleet_size=5, lease=0.05, generation=1))
    await eventually_async(lambda: service.acked() == [1])
    await eventually_async(lambda: driver.share() == 0.2, what="the fallback share 1/5")
    assert driver.fb._budgets.pushed(KEY) is None


async def test_a_server_that_sends_no_shares_leaves_the_fallback_share(
        connected: tuple[ScriptedControlPlane, Driver]) -> None:
    service, driver = connected
    assert await driver.calls(12) == ["ok"] * 10 + ["refused"] * 2  # alone: the whole budget
    driver.clock.advance(USAGE_INTERVAL)
    await eventually_async(lambda: service.admitted() == 10)
    assert driver.share() == 1.0 and service.acked() == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_agent_with_per_instance_breakers_still_reports_usage_and_takes_shares(
        mode: str, tmp_path: Path,
        control_plane: tuple[ScriptedControlPlane, grpc.Server, int]) -> None:
    service, _, port = control_plane
    driver = Driver(mode, port, tmp_path / "policies.pb", cluster_breakers=False)
    await driver.start()
    try:
        assert await driver.calls(2) == ["ok"] * 2
        driver.clock.advance(USAGE_INTERVAL)
        await eventually_async(lambda: service.admitted() == 2, what="usage reported")
        service.push(BudgetShare(KEY, 0.5, fleet_size=2, lease=60.0, generation=1))
        await eventually_async(lambda: service.acked() == [1], what="the share acked")
        assert driver.share() == 0.5
        assert not driver.fb._link.cluster.following  # its breakers stay per instance
    finally:
        await driver.stop()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_restarted_agent_without_its_server_enforces_one_over_the_cached_fleet_size(
        mode: str, tmp_path: Path,
        control_plane: tuple[ScriptedControlPlane, grpc.Server, int]) -> None:
    service, server, port = control_plane
    cache = tmp_path / "policies.pb"
    first = Driver(mode, port, cache)
    await first.start()
    service.push(BudgetShare(KEY, 0.5, fleet_size=4, lease=60.0, generation=1))
    await eventually_async(lambda: service.acked() == [1])
    await first.stop()  # the link writes the cache as it stops
    server.stop(grace=None)

    restarted = Driver(mode, port, cache, initial_fetch_timeout=0.05)
    await restarted.start()
    try:
        assert restarted.fb.policy_source.value == "cache"
        assert restarted.share() == 0.25
        # A quarter of burst 10: a depth of 2.5, so 2 calls pass at once, not 10.
        assert await restarted.calls(4) == ["ok"] * 2 + ["refused"] * 2
    finally:
        await restarted.stop()


# -- the real control plane ---------------------------------------------------------------

SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: resiliency
spec:
  policies:
    rateLimits:
      ordersLimit:
        limit: 200
        period: 1s
        burst: 20
  targets:
    apps:
      order-processor:
        rateLimit: ordersLimit
"""


@pytest.fixture
async def real_server() -> AsyncIterator[FuseboxServer]:
    async with FuseboxServer(ServerConfig(listen="127.0.0.1:0", store_url="memory://")) as srv:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as channel:
            await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=SPEC))
        yield srv


async def test_the_embedded_server_takes_reports_with_usage_and_the_stream_stays_up(
        real_server: FuseboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reports: list[agent_pb2.OutcomeReport] = []
    ingest = real_server.breakers.ingest

    def recording(session: Any, report: agent_pb2.OutcomeReport) -> None:
        reports.append(report)
        ingest(session, report)

    monkeypatch.setattr(real_server.breakers, "ingest", recording)
    driver = Driver("async", real_server.port, tmp_path / "policies.pb")
    await driver.start()
    try:
        assert driver.fb.policies is not None and driver.fb.policies.targets
        # The server may have pushed a share already (an idle instance's is small).
        results = await driver.calls(30)
        driver.clock.advance(USAGE_INTERVAL)

        def reported() -> tuple[int, int]:
            entries = [u for r in reports for u in r.budgets
                       if BudgetKey.from_proto(u.key) == KEY]
            return sum(u.admitted for u in entries), sum(u.refused for u in entries)

        await eventually_async(
            lambda: reported() == (results.count("ok"), results.count("refused")),
            what="the calls reported", details=lambda: f"{reported()} for {results}")
        assert driver.fb._link.connected
    finally:
        await driver.stop()


async def test_the_embedded_server_divides_the_budget_and_a_caller_that_stops_releases_its_share(
        real_server: FuseboxServer, tmp_path: Path) -> None:
    """Two agents on the real clock, both calling as fast as they may, then one stops.

    Every assertion waits for a condition: what the server granted is what the
    agents enforce, their shares never sum past the whole, and the idle one's
    share goes to the busy one.
    """
    fleet = [AsyncAgent(app_id="checkout", server=f"127.0.0.1:{real_server.port}",
                        instance_id=f"checkout-{i}", cache_path=tmp_path / f"cache-{i}.pb",
                        report_interval=0.005) for i in range(2)]
    for fb in fleet:
        await fb.start()
    busy = [True, True]

    async def caller(i: int) -> None:
        async def op() -> str:
            return "ok"

        handle = fleet[i].app("order-processor", method="orders")
        while True:
            if busy[i]:
                with suppress(RateLimitedError):
                    await handle.call(op)
            await asyncio.sleep(0.002)

    def shares() -> list[float]:
        return [fb._budgets.share(KEY) for fb in fleet]

    def pushed() -> bool:
        return all(fb._budgets.pushed(KEY) is not None for fb in fleet)

    tasks = [asyncio.create_task(caller(i)) for i in range(2)]
    try:
        await eventually_async(pushed, what="both agents enforcing a pushed share")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{real_server.port}") as channel:
            stub = budget_pb2_grpc.BudgetServiceStub(channel)

            async def acked() -> bool:
                view = (await stub.GetBudget(budget_pb2.GetBudgetRequest(
                    key=KEY.to_proto()))).budget
                return len(view.instances) == 2 and all(
                    i.acked_generation == i.generation > 0 for i in view.instances)

            deadline = asyncio.get_running_loop().time() + 10
            while not await acked():
                assert asyncio.get_running_loop().time() < deadline, "acks never caught up"
                await asyncio.sleep(0.02)
        assert sum(shares()) <= 1.0 + 1e-9
        busy[1] = False
        await eventually_async(lambda: shares()[1] <= 0.1 and shares()[0] >= 0.6,
                               what="the idle agent's share given to the busy one",
                               details=lambda: f"shares {shares()}")
        assert sum(shares()) <= 1.0 + 1e-9
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for fb in fleet:
            await fb.aclose()
