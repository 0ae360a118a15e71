"""What the budget store tests share: keys, policies, the stores on a manual clock."""

from __future__ import annotations

from collections.abc import Mapping

from fusebox.agent.budget import BudgetKey, BudgetKind
from fusebox.agent.policy import RateLimitPolicy, RetryBudgetPolicy, TargetKind
from fusebox.controlplane.budgets import AllocationParams, BudgetRequest, Usage
from tests.controlplane.breakers.breaker_cases import ManualClock

__all__ = ["KEY", "LIMIT", "PARAMS", "POLICY", "RETRY_KEY", "RETRY_POLICY", "ManualClock",
           "request", "used"]

KEY = BudgetKey("default", "budgets", BudgetKind.RATE_LIMIT, TargetKind.APP, "upstream",
                app_id="checkout")
RETRY_KEY = BudgetKey("default", "budgets", BudgetKind.RETRY_BUDGET, TargetKind.APP,
                      "upstream", app_id="checkout")
LIMIT = 100
POLICY = RateLimitPolicy("fleetLimit", limit=LIMIT)
RETRY_POLICY = RetryBudgetPolicy("fleetRetries", ratio=0.2, min_retries_per_second=10.0)
PARAMS = AllocationParams(lease=2.0)


def used(calls: float) -> Usage:
    """``calls`` wanted (and admitted) since the last refresh."""
    return Usage(admitted=round(calls), demand=calls)


def request(holders: tuple[str, ...] = (), *, usage: Mapping[str, Usage] | None = None,
            acks: Mapping[str, int] | None = None, departed: tuple[str, ...] = (),
            key: BudgetKey = KEY) -> BudgetRequest:
    policy = POLICY if key == KEY else RETRY_POLICY
    return BudgetRequest(key, policy, holders=holders, usage=usage or {}, acks=acks or {},
                         departed=departed)
