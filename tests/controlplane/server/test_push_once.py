"""A replica pushes each breaker transition to its agents once, as early as it learns of it.

The replica that applied a transition learns of it twice: from its own apply
(or advance) and from the transitions stream it tails; the two replies leave
the store at the same moment and either may be read first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fusebox.agent.breaker import BreakerState, TransitionCause
from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import TargetKind
from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.breakers.model import BreakerEvent
from fusebox.controlplane.server import FuseboxServer
from fusebox.controlplane.server.engines.breaker_hub import BreakerHub
from fusebox.controlplane.server.engines.policy_hub import PolicyHub
from fusebox.controlplane.server.engines.sessions import AgentSession
from fusebox.controlplane.server.metrics import Metrics
from fusebox.controlplane.spec_store.embedded import EmbeddedSpecStore
from fusebox.v1 import agent_pb2, breaker_pb2, breaker_pb2_grpc
from tests.controlplane.server.breaker_support import seeded_stream
from tests.controlplane.server.test_agent_protocol import DEADLINE, HELD, connect, report

KEY = BreakerKey("default", "myresiliency", TargetKind.APP, "order-processor", "orders")


class CountingSession(AgentSession):
    """An agent session that counts what is offered to it (offers of one breaker coalesce)."""

    def __init__(self) -> None:
        super().__init__("default", "checkout", "checkout-1", "test")
        self.offers: list[bytes] = []

    def offer_update(self, key: BreakerKey, serialized: bytes) -> None:
        self.offers.append(serialized)
        super().offer_update(key, serialized)


def trip(stream_id: str) -> BreakerEvent:
    return BreakerEvent(KEY, BreakerState.CLOSED, BreakerState.OPEN, 2, TransitionCause.TRIP,
                        at=1_700_000_000.0, open_until=1_700_000_060.0, stream_id=stream_id)


def hub_with_session(tmp_path: Path) -> tuple[BreakerHub, CountingSession]:
    hub = BreakerHub(EmbeddedBreakerStore(), PolicyHub(EmbeddedSpecStore(tmp_path / "s.db")),
                     Metrics())
    session = CountingSession()
    hub.add_interest(session, [KEY])
    return hub, session


async def test_a_transition_read_from_the_stream_first_is_not_pushed_again_by_its_apply(
    tmp_path: Path,
) -> None:
    hub, session = hub_with_session(tmp_path)
    await hub._propagate([trip("7")])
    await hub._push_own([trip("7")])
    assert len(session.offers) == 1


async def test_a_transition_pushed_from_its_apply_is_skipped_when_the_stream_brings_it(
    tmp_path: Path,
) -> None:
    hub, session = hub_with_session(tmp_path)
    await hub._push_own([trip("7")])
    await hub._propagate([trip("7")])
    await hub._propagate([trip("8")])  # another transition: pushed
    assert len(session.offers) == 2


async def test_an_agent_gets_one_update_per_transition_whichever_path_is_read_first(
    server: FuseboxServer,
) -> None:
    async with seeded_stream(server) as (channel, reporter):
        watcher = await connect(channel)
        await watcher.write(agent_pb2.ConnectRequest(
            interest=agent_pb2.BreakerInterest(add=[HELD])))
        await reporter.write(report(HELD, -5))  # simpleCB: consecutiveFailures >= 5
        opened = await asyncio.wait_for(watcher.read(), DEADLINE)
        assert opened.breaker_update.state == breaker_pb2.BREAKER_STATE_OPEN
        # The reset's update comes after anything the trip made this replica send.
        await breaker_pb2_grpc.BreakerServiceStub(channel).ResetBreaker(
            breaker_pb2.ResetBreakerRequest(key=HELD, reason="test"))
        following = await asyncio.wait_for(watcher.read(), DEADLINE)
        assert following.breaker_update.state == breaker_pb2.BREAKER_STATE_CLOSED
        assert following.breaker_update.cause == breaker_pb2.TRANSITION_CAUSE_RESET
        watcher.cancel()

