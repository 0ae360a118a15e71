"""The fleet's view on the server: per-target calls, loaded specs, convergence.

An in-process server on loopback; agents are raw Connect streams (the test
decides what each sends, acks included, and which one is an "old" agent that
never acks) or real ``AsyncAgent``s. Values are read from the server's
Prometheus registry.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from fusebox.agent import AsyncAgent, BreakerOpenError
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import agent_pb2, agent_pb2_grpc, breaker_pb2, policy_pb2, spec_pb2, spec_pb2_grpc
from tests.support.eventually import eventually_async
from tests.support.specs import SEED_SPEC

DEADLINE = 10.0
#: For real agents: a breaker and nothing else (the seed spec retries forever), and an
#: open time longer than any test, so a trip is the only transition.
SHOP_SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: metered
scopes: [shop]
spec:
  policies:
    circuitBreakers:
      cb:
        timeout: 60s
        trip: consecutiveFailures >= 2
  targets:
    apps:
      payments:
        circuitBreaker: cb
"""


def held(method: str) -> policy_pb2.BreakerKey:
    """A breaker key app `checkout` holds under the seed spec (simpleCB, 5 failures trip)."""
    return policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                                 kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                                 method=method)


def spec(name: str, *, scopes: str = "", namespace: str = "") -> str:
    return f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: {name}
{f"  namespace: {namespace}" if namespace else ""}
{f"scopes: [{scopes}]" if scopes else ""}
spec:
  policies:
    timeouts:
      quick: 1s
  targets:
    apps:
      inventory-{name}:
        timeout: quick
"""


class RawAgent:
    """One Connect stream spoken by the test; what the server sends is queued."""

    def __init__(self, call: grpc.aio.StreamStreamCall, instance: str) -> None:
        self.call, self.instance = call, instance
        self.received: asyncio.Queue[agent_pb2.ConnectResponse] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, channel: grpc.aio.Channel, app_id: str, instance: str,
                      *, ack: bool = True) -> RawAgent:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        await call.write(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            app_id=app_id, instance_id=instance)))
        agent = cls(call, instance)
        snapshot = await agent.next("snapshot")
        if ack:
            await agent.ack(snapshot.snapshot.policies.digest)
        return agent

    async def _read(self) -> None:
        while (message := await self.call.read()) is not grpc.aio.EOF:
            await self.received.put(message)

    async def next(self, kind: str) -> agent_pb2.ConnectResponse:
        """The next message of ``kind`` (others before it are dropped)."""
        async with asyncio.timeout(DEADLINE):
            while True:
                message = await self.received.get()
                if message.WhichOneof("message") == kind:
                    return message

    async def send(self, **fields: object) -> None:
        await self.call.write(agent_pb2.ConnectRequest(**fields))  # type: ignore[arg-type]

    async def ack(self, digest: str, accepted: bool = True) -> None:
        await self.send(policy_ack=agent_pb2.PolicyAck(digest=digest, accepted=accepted))

    async def hold(self, *keys: policy_pb2.BreakerKey, acks_updates: bool = True) -> None:
        await self.send(interest=agent_pb2.BreakerInterest(add=keys, acks_updates=acks_updates))

    async def ack_update(self, update: agent_pb2.BreakerUpdate) -> None:
        await self.send(breaker_acks=agent_pb2.BreakerAcks(acks=[
            agent_pb2.BreakerAck(key=update.key, generation=update.generation)]))

    async def close(self) -> None:
        self.call.cancel()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@pytest.fixture
async def server() -> AsyncIterator[FuseboxServer]:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://")
    async with FuseboxServer(config) as srv:
        yield srv


@pytest.fixture
async def channel(server: FuseboxServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        await apply(ch, SEED_SPEC)
        yield ch


async def apply(channel: grpc.aio.Channel, yaml: str) -> None:
    await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(spec_pb2.ApplySpecRequest(yaml=yaml))


def sample(server: FuseboxServer, name: str, **labels: str) -> float:
    value = server.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def calls(server: FuseboxServer, outcome: str, app_id: str = "checkout",
          spec: str = "myresiliency", target: str = "order-processor") -> float:
    return sample(server, "fusebox_target_calls_total", namespace="default", app_id=app_id,
                  spec=spec, kind="app", target=target, outcome=outcome)


def shop_calls(server: FuseboxServer, outcome: str) -> float:
    return calls(server, outcome, app_id="shop", spec="metered", target="payments")


async def fail() -> None:
    raise ConnectionError("payments is down")


async def succeed() -> None:
    pass


def loaded(server: FuseboxServer, name: str, namespace: str = "default") -> float | None:
    return server.metrics.registry.get_sample_value(
        "fusebox_fleet_resiliency_loaded", {"namespace": namespace, "name": name})


# -- calls per target ---------------------------------------------------------------------


async def test_target_calls_sum_successes_failures_and_rejections_over_methods_and_agents(
    server: FuseboxServer, channel: grpc.aio.Channel,
) -> None:
    first = await RawAgent.connect(channel, "checkout", "checkout-1")
    second = await RawAgent.connect(channel, "checkout", "checkout-2")
    await first.send(report=agent_pb2.OutcomeReport(sequence=1, breakers=[
        agent_pb2.BreakerOutcomes(key=held("orders"), runs=[3, -2, 1], rejected=4),
        agent_pb2.BreakerOutcomes(key=held("refunds"), rejected=2),  # rejections only
    ]))
    await second.send(report=agent_pb2.OutcomeReport(sequence=1, breakers=[
        agent_pb2.BreakerOutcomes(key=held("refunds"), runs=[-1, 5]),
        # Not in checkout's policies: refused, not counted.
        agent_pb2.BreakerOutcomes(key=policy_pb2.BreakerKey(
            namespace="default", spec="myresiliency", kind=policy_pb2.TARGET_KIND_APP,
            target="payments", method="charge"), runs=[-7], rejected=7),
    ]))
    await eventually_async(lambda: calls(server, "success") == 9, what="successes counted",
                           details=lambda: str([calls(server, o) for o in
                                                ("success", "failure", "rejected")]))
    assert calls(server, "failure") == 3
    assert calls(server, "rejected") == 6
    for agent in (first, second):
        await agent.close()


async def test_a_real_agent_reports_the_calls_its_open_breaker_rejected(
    server: FuseboxServer, channel: grpc.aio.Channel, tmp_path: Path,
) -> None:
    await apply(channel, SHOP_SPEC)
    async with AsyncAgent(app_id="shop", server=f"127.0.0.1:{server.port}",
                          cache_path=tmp_path / "cache.pb") as fb:
        await eventually_async(lambda: fb.policies is not None and bool(fb.policies.targets),
                               what="policies")
        target = fb.app("payments", method="charge")
        await target.call(succeed)
        rejected = 0
        async with asyncio.timeout(DEADLINE):
            while rejected < 3:
                try:
                    await target.call(fail)
                except BreakerOpenError:
                    rejected += 1
                except ConnectionError:
                    pass
        await eventually_async(lambda: shop_calls(server, "rejected") == rejected,
                               what="rejections reported",
                               details=lambda: str(shop_calls(server, "rejected")))
    assert shop_calls(server, "failure") == 2
    assert shop_calls(server, "success") == 1


# -- resiliency_loaded --------------------------------------------------------------------


async def test_resiliency_loaded_counts_the_agents_here_whose_accepted_policies_scope_a_spec(
    server: FuseboxServer, channel: grpc.aio.Channel,
) -> None:
    await apply(channel, spec("everyone"))
    await apply(channel, spec("billing-only", scopes="billing"))
    await apply(channel, spec("elsewhere", namespace="prod"))
    checkout = [await RawAgent.connect(channel, "checkout", f"checkout-{i}") for i in range(2)]
    billing = await RawAgent.connect(channel, "billing", "billing-1")
    silent = await RawAgent.connect(channel, "checkout", "checkout-silent", ack=False)

    def values() -> dict[str, float | None]:
        return {name: loaded(server, name) for name in ("myresiliency", "everyone",
                                                        "billing-only")}

    await eventually_async(
        lambda: values() == {"myresiliency": 2, "everyone": 3, "billing-only": 1},
        what="loaded specs", details=lambda: str(values()))
    assert loaded(server, "elsewhere", namespace="prod") == 0  # stored, loaded by nobody

    await checkout[0].close()
    await eventually_async(
        lambda: values() == {"myresiliency": 1, "everyone": 2, "billing-only": 1},
        what="a disconnected agent no longer counted", details=lambda: str(values()))

    await spec_pb2_grpc.SpecServiceStub(channel).DeleteSpec(
        spec_pb2.DeleteSpecRequest(namespace="default", name="everyone"))
    for agent in (checkout[1], billing):
        await agent.ack((await agent.next("snapshot")).snapshot.policies.digest)
    await eventually_async(lambda: loaded(server, "everyone") is None,
                           what="a deleted spec gone once its agents dropped it",
                           details=lambda: str(values()))
    for agent in (checkout[1], billing, silent):
        await agent.close()


# -- convergence ----------------------------------------------------------------------------


def converged(server: FuseboxServer, to_state: str = "open") -> float:
    return sample(server, "fusebox_breaker_convergence_seconds_count", to_state=to_state)


@pytest.mark.parametrize("second_leaves", [False, True])
async def test_a_trip_converges_when_the_last_acking_holder_acks_or_leaves(
    server: FuseboxServer, channel: grpc.aio.Channel, second_leaves: bool,
) -> None:
    first = await RawAgent.connect(channel, "checkout", "checkout-1")
    second = await RawAgent.connect(channel, "checkout", "checkout-2")
    old = await RawAgent.connect(channel, "checkout", "checkout-old")  # predates acks
    await first.hold(held("orders"))
    await second.hold(held("orders"))
    await old.hold(held("orders"), acks_updates=False)
    await first.send(report=agent_pb2.OutcomeReport(sequence=1, breakers=[
        agent_pb2.BreakerOutcomes(key=held("orders"), runs=[-5])]))
    updates = [(await a.next("breaker_update")).breaker_update for a in (first, second, old)]
    assert {u.state for u in updates} == {breaker_pb2.BREAKER_STATE_OPEN}
    await first.ack_update(updates[0])
    await eventually_async(lambda: server.breakers.convergence.pending == 1,
                           what="the transition waiting for its holders")
    assert converged(server) == 0  # one holder still has not acked
    if second_leaves:
        await second.close()
    else:
        await second.ack_update(updates[1])
    await eventually_async(lambda: converged(server) == 1, what="the trip converged")
    assert server.breakers.convergence.pending == 0  # the old agent is not waited for
    assert sample(server, "fusebox_breaker_convergence_seconds_sum", to_state="open") < DEADLINE
    for agent in (first, second, old):
        await agent.close()


async def test_real_agents_ack_a_trip_and_a_spec_change_once_each(
    server: FuseboxServer, channel: grpc.aio.Channel, tmp_path: Path,
) -> None:
    await apply(channel, SHOP_SPEC)
    agents = [AsyncAgent(app_id="shop", server=f"127.0.0.1:{server.port}",
                         cache_path=tmp_path / f"cache-{i}.pb", instance_id=f"shop-{i}")
              for i in range(2)]
    for fb in agents:
        await fb.__aenter__()
    try:
        for fb in agents:
            await eventually_async(lambda fb=fb: fb.policies is not None  # type: ignore[misc]
                                   and bool(fb.policies.targets), what="policies")
            await fb.app("payments", method="charge").call(succeed)
        await eventually_async(lambda: [len(h) for h in server.breakers._interest.values()]
                               == [2], what="both agents holding the breaker")
        async with asyncio.timeout(DEADLINE):
            while {str(fb.breaker_states()["payments:charge"]) for fb in agents} != {"open"}:
                try:
                    await agents[0].app("payments", method="charge").call(fail)
                except (ConnectionError, BreakerOpenError):
                    await asyncio.sleep(0.005)
        await eventually_async(lambda: converged(server) == 1, what="trip convergence")
        assert sum(sample(server, "fusebox_breaker_transitions_total", from_state="closed",
                          to_state="open", cause=c) for c in ("trip",)) == 1

        assert sample(server, "fusebox_policy_convergence_seconds_count") == 0  # connects
        await apply(channel, spec("more", scopes="shop"))
        await eventually_async(
            lambda: sample(server, "fusebox_policy_convergence_seconds_count") == 1,
            what="snapshot convergence")
        assert server.hub.convergence.pending == 0
        assert server.breakers.convergence.pending == 0
        assert sample(server, "fusebox_convergence_unfinished_total",
                      kind="breaker", reason="expired") == 0
    finally:
        for fb in agents:
            await fb.__aexit__(None, None, None)


async def test_a_snapshot_converges_on_the_last_ack_and_a_nack_is_counted_apart(
    server: FuseboxServer, channel: grpc.aio.Channel,
) -> None:
    first = await RawAgent.connect(channel, "checkout", "checkout-1")
    second = await RawAgent.connect(channel, "checkout", "checkout-2")
    count = "fusebox_policy_convergence_seconds_count"
    await apply(channel, spec("more", scopes="checkout"))
    digests = [(await a.next("snapshot")).snapshot.policies.digest for a in (first, second)]
    await first.ack(digests[0])
    await eventually_async(lambda: server.hub.convergence.pending == 1, what="waiting")
    assert sample(server, count) == 0
    await second.ack(digests[1])
    await eventually_async(lambda: sample(server, count) == 1, what="converged")

    await apply(channel, spec("again", scopes="checkout"))
    digests = [(await a.next("snapshot")).snapshot.policies.digest for a in (first, second)]
    await first.ack(digests[0])
    await second.ack(digests[1], accepted=False)
    await eventually_async(lambda: sample(server, "fusebox_convergence_unfinished_total",
                                          kind="policy", reason="nacked") == 1,
                           what="the NACK counted")
    assert sample(server, count) == 1
    for agent in (first, second):
        await agent.close()
