"""Fleet budgets on the server: ingest usage and acks, allocate, push shares.

Data flow (docs/budgets.md, sections 4 and 6):

    agents --OutcomeReport.budgets / .share_acks--> ingest()  (checked, summed)
    every refresh (250 ms; at once after a session starts):
        holders: the live sessions here whose policies bind each key
        --> BudgetStore.allocate(one request per key)   (one Lua call each, pipelined)
        --> each holder here gets its BudgetShare (on change, or to renew its lease)
    a session that ends --> departed at the next refresh (its share is freed a lease later)

Which keys a session holds comes from the policies it was last sent (the
policy hub's snapshot): ``held_budgets``. Reports are bounded as breaker
reports are (``report_limits.py``, docs/limits.md): a report whose budget
entries break the protocol's bounds has all of them refused, with a reason
naming the field (``ReportRejected``), and nothing of them is stored; the
stream and the report's breaker outcomes are unaffected.

When the store is unavailable nothing is renewed: agents keep their shares
until their leases end, then enforce the fallback share (``1 / fleet size``),
and are pushed shares again once the store answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from fusebox.agent.budget import BudgetKey, BudgetKind, BudgetShare, budget_key
from fusebox.agent.policy import RateLimitPolicy, ResolvedPolicies
from fusebox.controlplane.budgets.store import (
    Allocation,
    BudgetPolicy,
    BudgetRequest,
    BudgetStore,
    Usage,
)
from fusebox.controlplane.server.engines.policy_hub import PolicyHub
from fusebox.controlplane.server.engines.sessions import AgentSession
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.metrics import Metrics
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import agent_pb2

__all__ = [
    "DEFAULT_REFRESH",
    "MAX_BUDGET_COUNT",
    "MAX_BUDGET_ENTRIES",
    "MAX_USAGE_INTERVAL",
    "BudgetHub",
    "check_budget_entries",
    "demand_units",
    "held_budgets",
]

log = logging.getLogger("fusebox.server.budgets")

DEFAULT_REFRESH = 0.25  # seconds between allocations (P)
MAX_BUDGET_ENTRIES = 1024  # usage entries, and share acks, per report
MAX_USAGE_INTERVAL = 3600.0  # seconds one usage entry may cover
MAX_BUDGET_COUNT = 1_000_000_000  # calls one usage entry may count
#: Renew a share's lease when this fraction of it has passed since the last push.
RENEW_FRACTION = 0.25


def held_budgets(policies: ResolvedPolicies | None, app_id: str) -> dict[BudgetKey, BudgetPolicy]:
    """The budgets an agent of ``app_id`` with ``policies`` enforces, by key."""
    held: dict[BudgetKey, BudgetPolicy] = {}
    if policies is None:
        return held
    for target in policies.targets:
        if target.is_default:
            continue
        if target.rate_limit is not None:
            held[budget_key(target, BudgetKind.RATE_LIMIT, app_id)] = target.rate_limit
        if target.retry_budget is not None:
            held[budget_key(target, BudgetKind.RETRY_BUDGET, app_id)] = target.retry_budget
    return held


def demand_units(policy: BudgetPolicy, admitted: int, refused: int, first_attempts: int) -> float:
    """What an instance wanted of the fleet budget (docs/budgets.md, section 4):
    every call for a rate limit; for a retry budget, the retries its ratio did not cover."""
    if isinstance(policy, RateLimitPolicy):
        return float(admitted + refused)
    return max(0.0, admitted + refused - policy.ratio * first_attempts)


@dataclass(frozen=True, slots=True)
class _Entry:
    key: BudgetKey
    admitted: int
    refused: int
    first_attempts: int


def check_budget_entries(
    report: agent_pb2.OutcomeReport,
) -> tuple[list[_Entry], list[tuple[BudgetKey, int]]]:
    """The report's usage entries and share acks, decoded; ``ValueError`` naming the
    field of the first one out of bounds (then none of them may be used)."""
    if len(report.budgets) > MAX_BUDGET_ENTRIES:
        raise ValueError(f"report.budgets: {len(report.budgets)} entries in one report, at "
                         f"most {MAX_BUDGET_ENTRIES} accepted")
    if len(report.share_acks) > MAX_BUDGET_ENTRIES:
        raise ValueError(f"report.share_acks: {len(report.share_acks)} acks in one report, "
                         f"at most {MAX_BUDGET_ENTRIES} accepted")
    entries: list[_Entry] = []
    seen: set[BudgetKey] = set()
    for i, usage in enumerate(report.budgets):
        where = f"report.budgets[{i}]"
        try:
            key = BudgetKey.from_proto(usage.key)
        except ValueError as e:
            raise ValueError(f"{where}.key: {e}") from None
        if key in seen:
            raise ValueError(f"{where}.key: {key} appears twice in one report; at most one "
                             "usage entry per budget key")
        seen.add(key)
        interval = usage.interval.ToNanoseconds() / 1e9
        if not 0 < interval <= MAX_USAGE_INTERVAL:
            raise ValueError(f"{where}.interval: {interval:g}s; must be more than 0s and at "
                             f"most {MAX_USAGE_INTERVAL:g}s")
        for name in ("admitted", "refused", "first_attempts"):
            count = getattr(usage, name)
            if count > MAX_BUDGET_COUNT:
                raise ValueError(f"{where}.{name}: {count}; at most {MAX_BUDGET_COUNT} "
                                 "in one entry")
        entries.append(_Entry(key, usage.admitted, usage.refused, usage.first_attempts))
    acks: list[tuple[BudgetKey, int]] = []
    for i, ack in enumerate(report.share_acks):
        try:
            acks.append((BudgetKey.from_proto(ack.key), ack.generation))
        except ValueError as e:
            raise ValueError(f"report.share_acks[{i}].key: {e}") from None
    return entries, acks


class _SessionBudgets:
    """What the hub knows of one session: its keys and what it was last pushed."""

    __slots__ = ("held", "policies", "refused", "sent")

    def __init__(self) -> None:
        self.policies: ResolvedPolicies | None = None
        self.held: dict[BudgetKey, BudgetPolicy] = {}
        #: Keys reported but not held, told once per policies.
        self.refused: set[BudgetKey] = set()
        #: key -> (generation, share, fleet size, monotonic time pushed)
        self.sent: dict[BudgetKey, tuple[int, float, int, float]] = {}


class BudgetHub:
    def __init__(
        self,
        store: BudgetStore,
        policies: PolicyHub,
        metrics: Metrics,
        *,
        refresh: float = DEFAULT_REFRESH,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._policies = policies
        self._metrics = metrics
        self.refresh_period = refresh
        self._monotonic = monotonic
        self._sessions: dict[AgentSession, _SessionBudgets] = {}
        self._usage: dict[BudgetKey, dict[str, Usage]] = defaultdict(dict)
        self._acks: dict[BudgetKey, dict[str, int]] = defaultdict(dict)
        self._departed: dict[BudgetKey, set[str]] = defaultdict(set)
        #: The last policy seen per key: a key whose last holder here left still
        #: needs one refresh to record the departure.
        self._last_policy: dict[BudgetKey, BudgetPolicy] = {}
        self._wake = asyncio.Event()
        self.available = True
        #: The latest allocation of each key refreshed here (inspection, tests).
        self.allocations: dict[BudgetKey, Allocation] = {}

    # -- sessions ---------------------------------------------------------------

    def session_started(self, session: AgentSession) -> None:
        """Refresh now: a new instance gets its first share right after its snapshot."""
        self._sessions.setdefault(session, _SessionBudgets())
        self._wake.set()

    def drop_session(self, session: AgentSession) -> None:
        known = self._sessions.pop(session, None)
        if known is None:
            return
        for key in known.held:
            self._departed[key].add(session.instance_id)

    def _held(self, session: AgentSession) -> _SessionBudgets:
        """The session's budgets, re-read when it was sent other policies (keys it
        no longer holds depart)."""
        known = self._sessions.get(session)
        if known is None:
            known = self._sessions[session] = _SessionBudgets()
        if known.policies is not session.policies:
            held = held_budgets(session.policies, session.app_id)
            for key in known.held.keys() - held.keys():
                self._departed[key].add(session.instance_id)
                known.sent.pop(key, None)
            known.policies, known.held = session.policies, held
            known.refused.clear()
        return known

    # -- ingest -----------------------------------------------------------------

    def ingest(self, session: AgentSession, report: agent_pb2.OutcomeReport) -> None:
        """Take a report's budget usage and share acks (the next refresh uses them).

        Entries out of bounds are all refused (ReportRejected naming the field;
        nothing stored). A key the session's policies do not bind is refused
        once per policy snapshot (a report may cross a policy change) and the
        report's other entries are used.
        """
        if not report.budgets and not report.share_acks:
            return
        try:
            entries, acks = check_budget_entries(report)
        except ValueError as e:
            self._reject(session, f"{e}; this report's budget entries were ignored")
            log_event(log, logging.WARNING, "budget usage refused",
                      instance_id=session.instance_id, error=str(e))
            return
        known = self._held(session)
        instance = session.instance_id
        for i, entry in enumerate(entries):
            policy = known.held.get(entry.key)
            if policy is None:
                if entry.key not in known.refused:
                    known.refused.add(entry.key)
                    self._reject(session, f"report.budgets[{i}].key: app {session.app_id!r} "
                                 f"holds no budget {entry.key} in the policies it was sent; "
                                 "its usage is ignored")
                continue
            usage = Usage(entry.admitted, entry.refused, entry.first_attempts,
                          demand_units(policy, entry.admitted, entry.refused,
                                       entry.first_attempts))
            pending = self._usage[entry.key]
            previous = pending.get(instance)
            pending[instance] = usage if previous is None else previous + usage
            labels = (entry.key.namespace, session.app_id, entry.key.target,
                      entry.key.kind.value)
            if entry.admitted:
                self._metrics.budget_admitted.labels(*labels).inc(entry.admitted)
            if entry.refused:
                self._metrics.budget_refused.labels(*labels).inc(entry.refused)
        for key, generation in acks:
            if key in known.held:
                pending_acks = self._acks[key]
                pending_acks[instance] = max(generation, pending_acks.get(instance, 0))

    def _reject(self, session: AgentSession, reason: str) -> None:
        self._metrics.reports_rejected.inc()
        # ReportRejected names a breaker; for budgets its key is left empty and the
        # reason names the field (an agent logs such a rejection once per reason).
        session.offer_control(agent_pb2.ConnectResponse(
            report_rejected=agent_pb2.ReportRejected(reason=reason)
        ))

    # -- the refresh loop ---------------------------------------------------------

    async def run(self) -> None:
        """Refresh every ``refresh_period``, and at once when a session starts."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_period):
                    await self._wake.wait()
            self._wake.clear()
            await self.refresh()

    async def refresh(self) -> list[Allocation]:
        """One allocation of every key held here (or with news here); push the shares."""
        holders: dict[BudgetKey, list[AgentSession]] = defaultdict(list)
        for session in self._policies.sessions():
            if session.closed:
                continue
            for key, held in self._held(session).held.items():
                holders[key].append(session)
                self._last_policy[key] = held
        usage, self._usage = self._usage, defaultdict(dict)
        acks, self._acks = self._acks, defaultdict(dict)
        departed, self._departed = self._departed, defaultdict(set)
        requests = []
        for key in sorted(holders.keys() | usage.keys() | acks.keys() | departed.keys(),
                          key=str):
            policy = self._last_policy.get(key)
            if policy is None:
                continue
            requests.append(BudgetRequest(
                key, policy, holders=[s.instance_id for s in holders.get(key, ())],
                usage=usage.get(key, {}), acks=acks.get(key, {}),
                departed=departed.get(key, set()),
            ))
        for key in [k for k in self._last_policy if k not in holders]:
            del self._last_policy[key]  # its departures go out with this refresh
        if not requests:
            return []
        started = time.perf_counter()
        try:
            allocations = await self.store.allocate(requests)
        except StoreUnavailable as e:
            for key, instances in departed.items():  # departures must not be lost
                self._departed[key] |= instances
            if self.available:
                self.available = False
                log_event(log, logging.ERROR, "budget store unavailable: shares are not "
                          "renewed, agents fall back when their leases end", error=str(e))
            return []
        if not self.available:
            self.available = True
            log_event(log, logging.INFO, "budget store reachable again; pushing shares")
        self._metrics.budget_refresh_seconds.observe(time.perf_counter() - started)
        for allocation in allocations:
            self._publish(allocation, holders.get(allocation.key, ()))
        return allocations

    def _publish(self, allocation: Allocation, holders: Iterable[AgentSession]) -> None:
        key = allocation.key
        self.allocations[key] = allocation
        labels = (key.namespace, key.app_id, key.target, key.kind.value)
        self._metrics.budget_instances.labels(*labels).set(allocation.fleet_size)
        self._metrics.budget_free_share.labels(*labels).set(allocation.free)
        now = self._monotonic()
        renew_after = allocation.lease * RENEW_FRACTION
        for session in holders:
            grant = allocation.shares.get(session.instance_id)
            known = self._sessions.get(session)
            if grant is None or known is None or session.closed:
                continue
            sent = known.sent.get(key)
            if sent is not None and sent[:3] == (grant.generation, grant.share,
                                                allocation.fleet_size) and (
                    now - sent[3] < renew_after):
                continue
            known.sent[key] = (grant.generation, grant.share, allocation.fleet_size, now)
            share = BudgetShare(key, min(1.0, max(0.0, grant.share)), allocation.fleet_size,
                                allocation.lease, grant.generation)
            session.offer_shares({key: share.to_proto()})
