"""Fleet budgets on the server: each instance's share of a rate limit or retry budget.

The allocation (``allocation.py``: max-min water-filling with a minimum share
and headroom, raises only out of what no instance may still enforce) has one
pure implementation, run in memory by the embedded store and mirrored in Lua
(``budget_allocate.lua``) by the Redis store. ``open_budget_store(url)`` picks
a store; both follow the ``BudgetStore`` contract. See ``docs/budgets.md``.
A budget's identity is ``fusebox.agent.budget.BudgetKey``, shared with the agents.
"""

from __future__ import annotations

from fusebox.controlplane.budgets.allocation import AllocationParams
from fusebox.controlplane.budgets.store import (
    Allocation,
    BudgetPolicy,
    BudgetRequest,
    BudgetStore,
    BudgetView,
    Grant,
    InstanceView,
    Usage,
    open_budget_store,
)

__all__ = [
    "Allocation",
    "AllocationParams",
    "BudgetPolicy",
    "BudgetRequest",
    "BudgetStore",
    "BudgetView",
    "Grant",
    "InstanceView",
    "Usage",
    "open_budget_store",
]
