"""BudgetService: what operators see of fleet budgets (``fusebox budgets list/get``).

Read only: each budget's policy, fleet rate, use and refusals, and every
instance's share with its generation, ack and lease state, as the budget store
holds them (every replica's instances, on Redis).
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from fusebox.agent.budget import BudgetKey
from fusebox.agent.policy import RateLimitPolicy, rate_limit_to_proto, retry_budget_to_proto
from fusebox.controlplane.budgets import BudgetStore, BudgetView
from fusebox.controlplane.budgets.store import fleet_rate
from fusebox.controlplane.server.wire_time import timestamp
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import budget_pb2, budget_pb2_grpc

__all__ = ["BudgetService", "budget_to_pb"]


def budget_to_pb(view: BudgetView) -> budget_pb2.Budget:
    m = budget_pb2.Budget(
        key=view.key.to_proto(), display_name=str(view.key),
        admitted_per_second=view.admitted_per_second,
        refused_per_second=view.refused_per_second,
        first_attempts_per_second=view.first_attempts_per_second, use=view.use,
        fleet_size=view.fleet_size, free=view.free, generation=view.generation,
        updated_at=timestamp(view.at),
    )
    m.lease.FromNanoseconds(round(view.lease * 1e9))
    if isinstance(view.policy, RateLimitPolicy):
        m.rate_limit.CopyFrom(rate_limit_to_proto(view.policy))
    elif view.policy is not None:
        m.retry_budget.CopyFrom(retry_budget_to_proto(view.policy))
    if view.policy is not None:
        m.fleet_rate = fleet_rate(view.policy)
    for i in view.instances:
        instance = m.instances.add(
            instance_id=i.instance_id, share=i.share, held=i.held, generation=i.generation,
            acked_generation=i.acked_generation, demand_per_second=i.demand,
            seen_at=timestamp(i.seen_at), reports_usage=i.reports_usage,
        )
        held_until = i.held_until(view.lease)
        if i.left_at is not None and held_until is not None:
            instance.left_at.CopyFrom(timestamp(i.left_at))
            instance.held_until.CopyFrom(timestamp(held_until))
    return m


async def _abort(context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode,
                 details: str) -> NoReturn:
    await context.abort(code, details)
    raise AssertionError("unreachable: abort raises")


class BudgetService(budget_pb2_grpc.BudgetServiceServicer):
    def __init__(self, store: BudgetStore) -> None:
        self._store = store

    async def ListBudgets(self, request: budget_pb2.ListBudgetsRequest,
                          context: grpc.aio.ServicerContext[Any, Any]
                          ) -> budget_pb2.ListBudgetsResponse:
        try:
            views = await self._store.list(request.namespace)
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"budget store unavailable: {e}")
        return budget_pb2.ListBudgetsResponse(budgets=[budget_to_pb(v) for v in views])

    async def GetBudget(self, request: budget_pb2.GetBudgetRequest,
                        context: grpc.aio.ServicerContext[Any, Any]
                        ) -> budget_pb2.GetBudgetResponse:
        if not request.HasField("key"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "key: required")
        try:
            key = BudgetKey.from_proto(request.key)
        except ValueError as e:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"key: {e}")
        try:
            view = await self._store.describe(key)
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"budget store unavailable: {e}")
        if view is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND,
                         f"budget {key} not found: no connected instance holds it "
                         "(fusebox budgets list shows those that exist)")
        return budget_pb2.GetBudgetResponse(budget=budget_to_pb(view))
