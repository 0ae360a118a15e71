"""The report flusher: backoff, parking on the loop's shared ``IdleWatch``, waking.

Many ``ClusterSync`` flushers run on one real event loop with a short report
interval, each attached to a real agent's registry; ``send`` records what each
would put on its stream. What is asserted is who sends and who stays asleep.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fusebox.agent import Agent
from fusebox.agent._cluster import MAX_IDLE_REPORT_INTERVAL, ClusterConfig, ClusterSync, IdleWatch
from fusebox.agent._reporting import decode_runs
from fusebox.agent.policy import CircuitBreakerPolicy, ResolvedPolicies, TargetKind, TargetPolicy
from fusebox.agent.testing import ManualClock
from fusebox.v1 import agent_pb2
from tests.support.eventually import eventually_async

CB = CircuitBreakerPolicy("simpleCB", max_requests=1, timeout=5.0, trip="consecutiveFailures >= 3")
POLICIES = ResolvedPolicies("default", "checkout", (
    TargetPolicy(TargetKind.APP, "order-processor", circuit_breaker=CB,
                 spec_namespace="prod", spec_name="resiliency"),
))


class Flushing:
    """One agent whose ClusterSync flusher runs on the test's loop."""

    def __init__(self) -> None:
        self.fb = Agent(app_id="checkout", clock=ManualClock(), policies=POLICIES)
        self.cluster = ClusterSync(self.fb._registry, ClusterConfig(report_interval=0.001))
        self.sent: list[agent_pb2.ConnectRequest] = []
        self.looks = 0  # flushes attempted (wake-ups of the flusher)
        take = self.cluster.take_messages

        def counting_take() -> list[agent_pb2.ConnectRequest]:
            self.looks += 1
            return take()

        self.cluster.take_messages = counting_take  # type: ignore[method-assign]

    def call(self, ok: bool = True) -> None:
        def op() -> str:
            if not ok:
                raise ConnectionError("upstream down")
            return "ok"

        with suppress(ConnectionError):
            self.fb.app("order-processor", method="orders").call(op)

    def outcomes(self) -> list[bool]:
        return [ok for m in self.sent if m.HasField("report")
                for e in m.report.breakers for ok in decode_runs(e.runs)]

    async def send(self, message: agent_pb2.ConnectRequest) -> None:
        self.sent.append(message)


@asynccontextmanager
async def flushing(count: int) -> AsyncIterator[list[Flushing]]:
    agents = [Flushing() for _ in range(count)]
    loop = asyncio.get_running_loop()
    for a in agents:
        a.cluster.bind(loop)
        a.cluster.session_started(None)  # type: ignore[arg-type]
        a.call()  # creates the breaker: interest and one success to flush first
    tasks = [asyncio.create_task(a.cluster.run_flusher(a.send)) for a in agents]
    try:
        yield agents
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)




def watch() -> IdleWatch:
    return IdleWatch.of(asyncio.get_running_loop(), MAX_IDLE_REPORT_INTERVAL)


async def all_parked(agents: list[Flushing]) -> None:
    await eventually_async(lambda: watch().parked == len(agents), what="every idle flusher parked")


async def sleep_through_looks(looks: int) -> None:
    await asyncio.sleep(looks * MAX_IDLE_REPORT_INTERVAL)


async def test_idle_flushers_park_and_stay_asleep_while_the_watch_looks_for_them() -> None:
    async with flushing(50) as agents:
        await eventually_async(lambda: all(a.outcomes() == [True] for a in agents),
                               what="first reports")
        await all_parked(agents)
        before = [a.looks for a in agents]
        await sleep_through_looks(4)
        # Without the shared watch each flusher would wake every 80 ms on its own.
        assert [a.looks for a in agents] == before
        assert watch().parked == len(agents)


async def test_the_watch_wakes_only_the_parked_flusher_with_outcomes_to_send() -> None:
    async with flushing(20) as agents:
        await all_parked(agents)
        before = [a.looks for a in agents]
        agents[7].call()  # a success does not wake the flusher itself: the watch finds it
        await eventually_async(lambda: agents[7].outcomes() == [True, True],
                               what="the success reported")
        others = [a.looks for i, a in enumerate(agents) if i != 7]
        assert others == [n for i, n in enumerate(before) if i != 7]
        await all_parked(agents)


async def test_a_failure_wakes_a_parked_flusher_at_once() -> None:
    async with flushing(3) as agents:
        await all_parked(agents)
        agents[1].call(ok=False)
        await eventually_async(lambda: agents[1].outcomes() == [True, False],
                               what="the failure reported")
        assert [a.outcomes() for a in (agents[0], agents[2])] == [[True], [True]]


async def test_a_failure_on_the_links_own_loop_wakes_the_flusher_without_the_self_pipe(
) -> None:
    async with flushing(1) as agents:
        await all_parked(agents)
        loop = asyncio.get_running_loop()
        hops: list[object] = []
        hop = loop.call_soon_threadsafe

        def counting_hop(*args: object, **kwargs: object) -> asyncio.Handle:
            hops.append(args)
            return hop(*args, **kwargs)  # type: ignore[arg-type]

        loop.call_soon_threadsafe = counting_hop  # type: ignore[method-assign]
        try:
            agents[0].call(ok=False)
            await eventually_async(lambda: agents[0].outcomes() == [True, False],
                                   what="the failure reported")
        finally:
            del loop.call_soon_threadsafe
        assert hops == []


async def test_a_failure_in_another_thread_wakes_the_flusher_at_once() -> None:
    async with flushing(2) as agents:
        await all_parked(agents)
        await asyncio.to_thread(agents[0].call, False)
        await eventually_async(lambda: agents[0].outcomes() == [True, False],
                               what="the failure reported")
        assert agents[1].outcomes() == [True]


async def test_a_new_breaker_is_announced_by_a_parked_flusher() -> None:
    async with flushing(2) as agents:
        await all_parked(agents)
        agents[0].fb.app("order-processor", method="refunds").call(lambda: "ok")

        def announced() -> list[str]:
            return [k.method for m in agents[0].sent if m.HasField("interest")
                    for k in m.interest.add]

        await eventually_async(lambda: "refunds" in announced(),
                               what="interest in the new breaker sent")


async def test_a_cancelled_flusher_leaves_the_watch() -> None:
    agents: list[Flushing]
    async with flushing(5) as agents:
        await all_parked(agents)
    assert watch().parked == 0
    await sleep_through_looks(2)  # the watch's timer stops once nobody is parked
    assert watch().parked == 0


def test_flushers_of_different_loops_have_their_own_watch() -> None:
    async def parked_in_a_fresh_loop() -> int:
        async with flushing(2) as agents:
            await all_parked(agents)
            return watch().parked

    assert asyncio.run(parked_in_a_fresh_loop()) == 2
    assert asyncio.run(parked_in_a_fresh_loop()) == 2


def test_a_finished_loop_is_not_kept_alive_by_its_watch() -> None:
    async def park_and_leave() -> weakref.ref[asyncio.AbstractEventLoop]:
        async with flushing(3) as agents:
            await all_parked(agents)
        return weakref.ref(asyncio.get_running_loop())

    loop_ref = asyncio.run(park_and_leave())
    gc.collect()
    assert loop_ref() is None
