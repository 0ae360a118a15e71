"""Fleet budgets through a real in-process server (docs/budgets.md §4): fake agents
speak the Connect stream (usage up, BudgetShares down, acks up).

Every wait is a condition with a deadline; nothing asserts a duration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from fusebox.agent.budget import BudgetShare
from fusebox.controlplane.budgets import BudgetView
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import agent_pb2, policy_pb2, spec_pb2, spec_pb2_grpc
from tests.controlplane.server.budget_support import DEADLINE, KEY, SPEC, FakeAgent, usage
from tests.support.eventually import eventually_async
from tests.support.redis_server import RedisServer

LEASE = 1.0
TOLERANCE = 1e-9


@pytest.fixture(params=["embedded", "redis"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[FuseboxServer]:
    store_url = "memory://" if request.param == "embedded" else request.getfixturevalue(
        "redis_url")
    config = ServerConfig(listen="127.0.0.1:0", store_url=store_url, budget_refresh=0.05,
                          budget_lease=LEASE)
    async with FuseboxServer(config) as srv:
        yield srv


@pytest.fixture
async def channel(server: FuseboxServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        await spec_pb2_grpc.SpecServiceStub(ch).ApplySpec(spec_pb2.ApplySpecRequest(yaml=SPEC))
        yield ch


@pytest.fixture
async def agents(channel: grpc.aio.Channel) -> AsyncIterator[list[FakeAgent]]:
    started: list[FakeAgent] = []
    yield started
    for agent in started:
        await agent.stop()


async def start(agents: list[FakeAgent], channel: grpc.aio.Channel, instance_id: str,
                **options: object) -> FakeAgent:
    agent = FakeAgent(channel, instance_id, **options)  # type: ignore[arg-type]
    agents.append(agent)
    return await agent.start()


def watch_sum(agents: list[FakeAgent], sums: list[float]) -> None:
    """Record, at every share any agent receives, the sum of the latest shares."""
    def on_share(_: BudgetShare) -> None:
        sums.append(sum(a.share or 0.0 for a in agents))
    for agent in agents:
        agent.on_share = on_share


async def view(server: FuseboxServer) -> BudgetView | None:
    return await server.budget_store.describe(KEY)


async def test_skewed_demand_gets_max_min_shares_that_never_sum_above_one(
    server: FuseboxServer, channel: grpc.aio.Channel, agents: list[FakeAgent],
) -> None:
    busy = await start(agents, channel, "busy", demand=200.0)
    light = await start(agents, channel, "light", demand=4.0)
    sums: list[float] = []
    watch_sum(agents, sums)
    # light wants 4 * 1.25 = 5 of 100 calls/s (5%, above the 5% minimum share);
    # busy wants more than everything: it gets the rest.
    await eventually_async(
        lambda: light.share is not None and busy.share is not None
        and abs(light.share - 0.05) < 0.01 and busy.share > 0.9,
        deadline=DEADLINE, what="max-min shares",
        details=lambda: f"busy {busy.share}, light {light.share}")
    assert sums and max(sums) <= 1 + TOLERANCE
    last = busy.shares[-1]
    assert (last.key, last.fleet_size, last.lease) == (KEY, 2, LEASE)
    assert busy.snapshots == 1


async def test_an_instance_that_stops_calling_releases_its_share(
    server: FuseboxServer, channel: grpc.aio.Channel, agents: list[FakeAgent],
) -> None:
    a = await start(agents, channel, "a", demand=200.0)
    b = await start(agents, channel, "b", demand=200.0)
    await eventually_async(
        lambda: a.share is not None and b.share is not None
        and abs(a.share - 0.5) < 0.02 and abs(b.share - 0.5) < 0.02,
        deadline=DEADLINE, what="an even split of a saturated budget",
        details=lambda: f"a {a.share}, b {b.share}")
    sums: list[float] = []
    watch_sum(agents, sums)
    a.demand = 0.0  # stops calling: reports no demand any more
    minimum = 0.1 / 2
    await eventually_async(
        lambda: a.share is not None and b.share is not None
        and a.share <= minimum + TOLERANCE and b.share >= 1 - minimum - TOLERANCE,
        deadline=DEADLINE, what="a's share released to b",
        details=lambda: f"a {a.share}, b {b.share}")
    assert max(sums) <= 1 + TOLERANCE


async def test_a_raise_waits_for_the_lowered_instance_to_ack(
    server: FuseboxServer, channel: grpc.aio.Channel, agents: list[FakeAgent],
) -> None:
    silent = await start(agents, channel, "silent", demand=200.0, acks=False)
    await eventually_async(lambda: (silent.share or 0.0) > 0.99, deadline=DEADLINE,
                           what="the first instance holding the whole budget")
    newcomer = await start(agents, channel, "newcomer", demand=200.0)
    # silent is lowered to half, but never acks: it may still enforce everything,
    # so newcomer gets nothing, refresh after refresh.
    await eventually_async(lambda: any(s.share < 0.6 for s in silent.shares),
                           deadline=DEADLINE, what="silent lowered")
    await eventually_async(lambda: len(newcomer.shares) >= 5, deadline=DEADLINE,
                           what="newcomer's lease renewed several times")
    assert all(s.share == 0.0 for s in newcomer.shares)
    lowered = next(s for s in reversed(silent.shares) if s.share < 0.6)
    await silent.ack(lowered)
    await eventually_async(lambda: (newcomer.share or 0.0) > 0.4, deadline=DEADLINE,
                           what="newcomer raised once silent acked",
                           details=lambda: f"newcomer {newcomer.share}")


async def test_a_departed_instance_share_is_freed_after_its_lease(
    server: FuseboxServer, channel: grpc.aio.Channel, agents: list[FakeAgent],
) -> None:
    stays = await start(agents, channel, "stays", demand=200.0)
    leaves = await start(agents, channel, "leaves", demand=200.0)
    await eventually_async(
        lambda: abs((stays.share or 0) - 0.5) < 0.02 and abs((leaves.share or 0) - 0.5) < 0.02,
        deadline=DEADLINE, what="an even split")
    await leaves.stop()
    agents.remove(leaves)

    async def departed_and_held() -> bool:
        found = await view(server)
        row = next((i for i in found.instances if i.instance_id == "leaves"), None) if found \
            else None
        return row is not None and row.left_at is not None

    async with asyncio.timeout(DEADLINE):
        while not await departed_and_held():  # noqa: ASYNC110 - polls the store
            await asyncio.sleep(0.01)
    # While its lease may still run, what it held is not given to anyone.
    found = await view(server)
    assert found is not None
    assert sum(i.held for i in found.instances) <= 1 + TOLERANCE
    assert (stays.share or 0) <= 1 - next(
        i.held for i in found.instances if i.instance_id == "leaves") + TOLERANCE
    await eventually_async(lambda: (stays.share or 0) > 0.99, deadline=DEADLINE,
                           what="the departed share given to the one left")
    found = await view(server)
    assert found is not None and [i.instance_id for i in found.instances] == ["stays"]


async def test_bad_usage_entries_are_refused_naming_the_field_and_nothing_is_stored(
    server: FuseboxServer, channel: grpc.aio.Channel, agents: list[FakeAgent],
) -> None:
    agent = await start(agents, channel, "careless")
    await eventually_async(lambda: agent.share is not None, deadline=DEADLINE,
                           what="a first share")
    bad = usage(KEY, 0.05, 10, 0)
    bad.interval.FromNanoseconds(0)
    await agent.send(agent_pb2.OutcomeReport(budgets=[usage(KEY, 0.05, 50, 0), bad]))
    await eventually_async(lambda: bool(agent.rejections), deadline=DEADLINE,
                           what="a rejection")
    assert "report.budgets[1].key" in agent.rejections[0]  # the same key twice
    agent.rejections.clear()
    await agent.send(agent_pb2.OutcomeReport(budgets=[bad]))
    await eventually_async(lambda: bool(agent.rejections), deadline=DEADLINE,
                           what="a rejection")
    assert "report.budgets[0].interval" in agent.rejections[0]
    agent.rejections.clear()
    unknown = policy_pb2.BudgetKey()
    unknown.CopyFrom(KEY.to_proto())
    unknown.target = "elsewhere"
    entry = usage(KEY, 0.05, 1, 0)
    entry.key.CopyFrom(unknown)
    await agent.send(agent_pb2.OutcomeReport(budgets=[entry]))
    await eventually_async(lambda: bool(agent.rejections), deadline=DEADLINE,
                           what="a rejection")
    assert "report.budgets[0].key" in agent.rejections[0]
    assert "holds no budget" in agent.rejections[0]
    found = await view(server)
    assert found is not None
    [row] = found.instances
    assert not row.reports_usage and row.demand == 0.0  # nothing of the bad reports stored


async def test_a_redis_outage_stops_renewals_and_the_fleet_picks_up_where_it_was(
    fresh_redis: RedisServer,
) -> None:
    """While the store is down nothing is granted (agents run out their leases, then
    fall back to 1/N on their side); the server keeps serving, and once the store is
    back the allocation goes on from the generations it had, never above the budget."""
    config = ServerConfig(listen="127.0.0.1:0", store_url=fresh_redis.url, budget_refresh=0.05,
                          budget_lease=LEASE)
    async with FuseboxServer(config) as srv, grpc.aio.insecure_channel(
            f"127.0.0.1:{srv.port}") as ch:
        await spec_pb2_grpc.SpecServiceStub(ch).ApplySpec(spec_pb2.ApplySpecRequest(yaml=SPEC))
        busy = await FakeAgent(ch, "busy", demand=200.0).start()
        light = await FakeAgent(ch, "light", demand=4.0).start()
        try:
            await eventually_async(lambda: busy.share is not None and light.share is not None
                                   and abs(busy.share + light.share - 1) < 0.02,
                                   deadline=DEADLINE, what="the budget divided")
            before = max(s.generation for s in busy.shares + light.shares)

            fresh_redis.stop()
            # Renewals stop: no share is pushed for longer than a lease.
            received = len(busy.shares) + len(light.shares)
            await asyncio.sleep(2 * LEASE)
            assert len(busy.shares) + len(light.shares) == received
            assert busy.connected and light.connected  # the streams are kept

            fresh_redis.start()  # AOF: the budget's rows come back with it
            await eventually_async(
                lambda: any(s.generation > before for s in busy.shares + light.shares),
                deadline=DEADLINE, what="shares pushed again once the store is back")
            await eventually_async(
                lambda: busy.share is not None and light.share is not None
                and abs(busy.share + light.share - 1) < 0.02,
                deadline=DEADLINE, what="the budget divided again")
            assert (busy.share or 0) + (light.share or 0) <= 1 + TOLERANCE
        finally:
            await busy.stop()
            await light.stop()
