"""The live fleet budgets of one agent, by ``BudgetKey``, and the shares they enforce.

A target's rate limit and retry budget live here, not in a call plan: every
handle of the target (each app method, each classifier) shares them, and a
new policy snapshot that keeps a budget's policy keeps its state. A budget
whose policy changed starts afresh (a new bucket, an empty window).

Each budget enforces a share (docs/budgets.md, "The share an agent
enforces"): the share pushed by the control plane (``apply_share``, phase 2's
link) while its lease runs, otherwise the fallback share, ``1 / fleet size``
last told (1: alone). ``apply_share`` and ``expire_share`` replace it in
place, so call plans never need to be rebuilt for a new share. The link
(``fusebox.agent._budget_sync``) calls them, never a call path; it also
writes the fleet sizes to the disk cache and seeds them back
(``seed_fleet_sizes``) when a restarted agent enforces cached policies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from fusebox.agent._rate_limiter import RateLimiter
from fusebox.agent._retry_budget import RetryBudget
from fusebox.agent.budget import BudgetKey, BudgetKind, BudgetShare, budget_key, fallback_share
from fusebox.agent.clock import Clock
from fusebox.agent.policy import RateLimitPolicy, RetryBudgetPolicy, TargetPolicy

Enforcer = RateLimiter | RetryBudget


def bound_budgets(target: TargetPolicy, app_id: str) -> Iterable[BudgetKey]:
    """The keys of the budgets ``target`` binds for calls made by ``app_id``."""
    if target.rate_limit is not None:
        yield budget_key(target, BudgetKind.RATE_LIMIT, app_id)
    if target.retry_budget is not None:
        yield budget_key(target, BudgetKind.RETRY_BUDGET, app_id)


class BudgetRegistry:
    """Every budget of one agent; ``rate_limiter``/``retry_budget`` find or create."""

    def __init__(self, clock: Clock, app_id: str) -> None:
        self._now = self.now = clock.monotonic
        self.app_id = app_id
        self._lock = threading.Lock()  # writers only: the call path never takes it
        self._live: dict[BudgetKey, tuple[object, Enforcer]] = {}  # key -> (policy, enforcer)
        self._pushed: dict[BudgetKey, BudgetShare] = {}
        self._fleet_sizes: dict[BudgetKey, int] = {}
        #: The keys the policies in force bind for this app (``retain`` sets it).
        self._bound: frozenset[BudgetKey] = frozenset()
        self._bound_since: dict[BudgetKey, float] = {}

    def rate_limiter(self, key: BudgetKey, policy: RateLimitPolicy) -> RateLimiter:
        """The bucket of ``key`` under ``policy``: the live one if the policy is the same."""
        enforcer = self._get(key, policy)
        assert isinstance(enforcer, RateLimiter)
        return enforcer

    def retry_budget(self, key: BudgetKey, policy: RetryBudgetPolicy) -> RetryBudget:
        """The retry window of ``key`` under ``policy``: the live one if the policy is the same."""
        enforcer = self._get(key, policy)
        assert isinstance(enforcer, RetryBudget)
        return enforcer

    def share(self, key: BudgetKey) -> float:
        """The share ``key`` enforces now: pushed, else the fallback share."""
        pushed = self._pushed.get(key)
        return pushed.share if pushed is not None else fallback_share(self._fleet_sizes.get(key, 1))

    def apply_share(self, share: BudgetShare) -> None:
        """Enforce a pushed share from now on (it replaces the fallback or an older one).

        Its fleet size becomes the one the fallback share divides by. A share
        for a budget this agent does not hold yet is kept for when it does.
        """
        with self._lock:
            self._pushed[share.key] = share
            self._fleet_sizes[share.key] = max(1, share.fleet_size)
            self._reshare(share.key)

    def expire_share(self, key: BudgetKey, generation: int | None = None) -> bool:
        """The pushed share's lease ended unrenewed: back to the fallback share.

        With ``generation``, only if the share in force is still that one (a
        renewal or a newer share keeps it). Whether a share was dropped.
        """
        with self._lock:
            pushed = self._pushed.get(key)
            if pushed is None or (generation is not None and pushed.generation != generation):
                return False
            del self._pushed[key]
            self._reshare(key)
            return True

    def pushed(self, key: BudgetKey) -> BudgetShare | None:
        """The pushed share ``key`` enforces (None: the fallback share)."""
        return self._pushed.get(key)

    def holds(self, key: BudgetKey) -> bool:
        """Whether the policies in force bind ``key`` for this app."""
        return key in self._bound

    def bound(self) -> frozenset[BudgetKey]:
        """Every key the policies in force bind for this app."""
        return self._bound

    def bound_since(self, key: BudgetKey) -> float:
        """Since when the policies in force bind ``key`` (on the agent's clock)."""
        return self._bound_since.get(key, self._now())

    def fleet_sizes(self) -> dict[BudgetKey, int]:
        """The fleet size last told per key (what the disk cache keeps)."""
        with self._lock:
            return dict(self._fleet_sizes)

    def seed_fleet_sizes(self, sizes: dict[BudgetKey, int]) -> None:
        """Fleet sizes read back from the disk cache, for the keys the policies bind.

        Only where nothing newer was told: a size from a pushed share wins.
        """
        with self._lock:
            for key, size in sizes.items():
                if key in self._bound and key not in self._fleet_sizes:
                    self._fleet_sizes[key] = max(1, size)
                    self._reshare(key)

    def retain(self, targets: Iterable[TargetPolicy]) -> None:
        """Drop the budgets no longer bound by ``targets`` (after a policy swap),
        their pushed shares and fleet sizes with them."""
        keep = frozenset(key for target in targets for key in bound_budgets(target, self.app_id))
        now = self._now()
        with self._lock:
            self._bound = keep
            self._bound_since = {key: self._bound_since.get(key, now) for key in keep}
            for key in [k for k in self._live if k not in keep]:
                del self._live[key]
            for key in [k for k in self._pushed if k not in keep]:
                del self._pushed[key]
            for key in [k for k in self._fleet_sizes if k not in keep]:
                del self._fleet_sizes[key]

    def budgets(self) -> dict[BudgetKey, Enforcer]:
        """Every live budget (inspection, and phase 2's usage reports)."""
        with self._lock:
            return {key: enforcer for key, (_, enforcer) in self._live.items()}

    def _get(self, key: BudgetKey, policy: RateLimitPolicy | RetryBudgetPolicy) -> Enforcer:
        live = self._live.get(key)
        if live is not None and live[0] == policy:
            return live[1]
        with self._lock:
            live = self._live.get(key)
            if live is None or live[0] != policy:
                now, share = self._now(), self.share(key)
                enforcer: Enforcer
                if isinstance(policy, RateLimitPolicy):
                    enforcer = RateLimiter(policy, share, now)
                else:
                    enforcer = RetryBudget(policy, share, now)
                live = self._live[key] = (policy, enforcer)
            return live[1]

    def _reshare(self, key: BudgetKey) -> None:
        live = self._live.get(key)
        if live is None:
            return
        enforcer = live[1]
        if isinstance(enforcer, RateLimiter):
            enforcer.set_share(self.share(key), self._now())
        else:
            enforcer.set_share(self.share(key))
