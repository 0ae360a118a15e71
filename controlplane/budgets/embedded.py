"""The embedded budget store: the instance tables in this process's memory.

One process, one replica: ``allocate`` runs ``allocation.refresh_rows`` on
each key's table in turn (there is no await inside a refresh, so each is
atomic for the event loop), with this store's clock (unix seconds).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fusebox.agent.budget import BudgetKey
from fusebox.controlplane.budgets import totals
from fusebox.controlplane.budgets.allocation import (
    DEFAULT_PARAMS,
    AllocationParams,
    Holding,
    demand_now,
    refresh_rows,
)
from fusebox.controlplane.budgets.store import (
    Allocation,
    BudgetPolicy,
    BudgetRequest,
    BudgetView,
    Grant,
    InstanceView,
    fleet_rate,
)

__all__ = ["EmbeddedBudgetStore"]


@dataclass(slots=True)
class _Table:
    policy: BudgetPolicy
    generation: int = 0
    rows: dict[str, Holding] = field(default_factory=dict)
    ring: dict[str, str] = field(default_factory=dict)
    at: float = 0.0


class EmbeddedBudgetStore:
    """A ``BudgetStore`` in memory. ``clock`` (unix seconds) is for tests."""

    def __init__(self, *, params: AllocationParams = DEFAULT_PARAMS,
                 clock: Callable[[], float] = time.time) -> None:
        self.params = params
        self._clock = clock
        self._tables: dict[BudgetKey, _Table] = {}

    async def allocate(self, requests: Sequence[BudgetRequest]) -> builtins.list[Allocation]:
        return [self._refresh(request) for request in requests]

    def _refresh(self, request: BudgetRequest) -> Allocation:
        now = self._clock()
        table = self._tables.get(request.key)
        if table is None:
            table = self._tables[request.key] = _Table(request.policy)
        table.policy = request.policy
        for usage in request.usage.values():
            totals.add_counts(table.ring, int(now), usage.admitted, usage.refused,
                              usage.first_attempts)
        result = refresh_rows(
            table.rows, rate=fleet_rate(request.policy), holders=request.holders,
            usage={i: u.demand for i, u in request.usage.items()}, acks=request.acks,
            departed=request.departed, generation=table.generation, now=now,
            params=self.params,
        )
        table.generation, table.at = result.generation, now
        if not table.rows:
            del self._tables[request.key]
        return Allocation(
            request.key, result.generation,
            {i: Grant(table.rows[i].granted, table.rows[i].generation) for i in result.fleet},
            len(result.fleet), result.free, self.params.lease, now,
        )

    async def describe(self, key: BudgetKey) -> BudgetView | None:
        table = self._tables.get(key)
        return None if table is None else self._view(key, table)

    async def list(self, namespace: str = "") -> builtins.list[BudgetView]:
        return [self._view(key, table) for key, table in sorted(
            self._tables.items(), key=lambda item: str(item[0])
        ) if not namespace or key.namespace == namespace]

    def _view(self, key: BudgetKey, table: _Table) -> BudgetView:
        now = self._clock()
        admitted, refused, first = totals.rates(table.ring, now)
        instances = tuple(
            InstanceView(i, row.granted, row.held, row.generation, row.acked,
                         demand_now(row, now, self.params), row.seen,
                         row.left if row.left > 0 else None, row.demand_at > 0)
            for i, row in sorted(table.rows.items())
        )
        live = sum(1 for view in instances if view.left_at is None)
        free = 1.0 - sum(view.held for view in instances)
        return BudgetView(key, table.policy, table.generation, live, max(0.0, free),
                          self.params.lease, admitted, refused, first, instances, table.at)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
