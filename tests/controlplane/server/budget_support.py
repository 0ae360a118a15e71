"""A fake agent that speaks the Connect stream's budget messages directly
(usage reports up, BudgetShares down, acks up), for the server's budget tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc

from fusebox.agent.budget import BudgetKey, BudgetKind, BudgetShare
from fusebox.agent.policy import TargetKind
from fusebox.v1 import agent_pb2, agent_pb2_grpc
from tests.support.budgets import budget_spec

SPEC_NAME = "budgets"
LIMIT = 100  # calls per second, fleet-wide
SPEC = budget_spec(SPEC_NAME, limit=LIMIT)
KEY = BudgetKey("default", SPEC_NAME, BudgetKind.RATE_LIMIT, TargetKind.APP, "upstream",
                app_id="checkout")
DEADLINE = 20.0


class FakeAgent:
    """One instance of ``checkout``: reports ``demand`` calls/s for ``KEY`` every
    ``period`` (admitted up to its share, refused beyond), acks shares when ``acks``."""

    def __init__(self, channel: grpc.aio.Channel, instance_id: str, *, demand: float = 0.0,
                 acks: bool = True, period: float = 0.05) -> None:
        self.instance_id = instance_id
        self.demand = demand
        self.acks = acks
        self.period = period
        self.shares: list[BudgetShare] = []  # every share received, in order
        self.rejections: list[str] = []
        self.snapshots = 0
        self.on_share: Callable[[BudgetShare], None] = lambda share: None
        self._call = agent_pb2_grpc.AgentServiceStub(channel).Connect()
        self._tasks: list[asyncio.Task[None]] = []
        self._sequence = 0
        self._writing = asyncio.Lock()  # a gRPC stream takes one write at a time

    @property
    def connected(self) -> bool:
        """Whether its Connect stream is still open."""
        return not self._call.done()

    @property
    def share(self) -> float | None:
        return self.shares[-1].share if self.shares else None

    async def start(self) -> FakeAgent:
        await self._call.write(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            app_id="checkout", instance_id=self.instance_id)))
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._report())]
        return self

    async def _read(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            while (message := await self._call.read()) is not grpc.aio.EOF:
                assert isinstance(message, agent_pb2.ConnectResponse)
                kind = message.WhichOneof("message")
                if kind == "snapshot":
                    self.snapshots += 1
                elif kind == "report_rejected":
                    self.rejections.append(message.report_rejected.reason)
                elif kind == "budget_shares":
                    for m in message.budget_shares.shares:
                        share = BudgetShare.from_proto(m)
                        self.shares.append(share)
                        self.on_share(share)
                        if self.acks:
                            await self.ack(share)

    async def ack(self, share: BudgetShare) -> None:
        await self.send(agent_pb2.OutcomeReport(share_acks=[agent_pb2.BudgetShareAck(
            key=share.key.to_proto(), generation=share.generation)]))

    async def send(self, report: agent_pb2.OutcomeReport) -> None:
        async with self._writing:
            self._sequence += 1
            report.sequence = self._sequence
            await self._call.write(agent_pb2.ConnectRequest(report=report))

    async def _report(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.CancelledError):
            while True:
                await asyncio.sleep(self.period)
                wanted = round(self.demand * self.period)
                if wanted <= 0:
                    continue
                allowed = round((self.share or 0.0) * LIMIT * self.period)
                admitted = min(wanted, allowed)
                await self.send(agent_pb2.OutcomeReport(budgets=[usage(
                    KEY, self.period, admitted, wanted - admitted)]))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._call.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def usage(key: BudgetKey, interval: float, admitted: int, refused: int,
          first_attempts: int = 0) -> agent_pb2.BudgetUsage:
    entry = agent_pb2.BudgetUsage(key=key.to_proto(), admitted=admitted, refused=refused,
                                  first_attempts=first_attempts)
    entry.interval.FromNanoseconds(round(interval * 1e9))
    return entry
