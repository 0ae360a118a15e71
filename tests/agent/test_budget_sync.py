"""Fleet budgets on the link: usage entries up, shares down, acks, leases (docs/budgets.md).

A ``ClusterSync`` with its ``BudgetSync`` attached to a real agent with static
policies and a manual clock, as in ``test_cluster_acks``: ``on_response`` is
what the link calls when a message arrives, ``take_messages`` what the
flusher would send. Lease timers run on a real event loop (a lease of a few
milliseconds, waited for as a condition). ``test_budget_link`` runs the same
over a real Connect stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fusebox.agent import Agent, RateLimitedError
from fusebox.agent._budget_sync import IDLE_USAGE_INTERVAL, USAGE_INTERVAL, BudgetSync
from fusebox.agent._cluster import ClusterSync
from fusebox.agent._reporting import ReportLimits, pack_reports
from fusebox.agent.budget import BudgetKey, BudgetKind, BudgetShare, budget_key
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    RateLimitPolicy,
    ResolvedPolicies,
    RetryBudgetPolicy,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
)
from fusebox.agent.testing import ManualClock
from fusebox.v1 import agent_pb2
from tests.support.eventually import eventually_async

LIMIT = RateLimitPolicy("ordersLimit", limit=10, period=1.0, burst=10)
BUDGET = RetryBudgetPolicy("ordersRetries", ratio=0.5, window=10.0, min_retries_per_second=0.0)
RETRY = RetryPolicy("retryTwice", max_retries=2, duration=0.0)
CB = CircuitBreakerPolicy("simpleCB", max_requests=1, timeout=5.0, trip="consecutiveFailures >= 50")


def target(name: str = "order-processor", **policies: Any) -> TargetPolicy:
    return TargetPolicy(TargetKind.APP, name, spec_namespace="prod", spec_name="resiliency",
                        **policies)


BUDGETED = target(rate_limit=LIMIT, retry=RETRY, retry_budget=BUDGET, circuit_breaker=CB)
POLICIES = ResolvedPolicies("default", "checkout", (BUDGETED,))
RATE_KEY = budget_key(BUDGETED, BudgetKind.RATE_LIMIT, "checkout")
RETRY_KEY = budget_key(BUDGETED, BudgetKind.RETRY_BUDGET, "checkout")


class Fixture:
    def __init__(self, policies: ResolvedPolicies = POLICIES) -> None:
        self.clock = ManualClock()
        self.fb = Agent(app_id="checkout", clock=self.clock, policies=policies)
        self.budgets = BudgetSync(self.fb._budgets)
        self.cluster = ClusterSync(self.fb._registry, budgets=self.budgets)

    def connect(self, *, snapshot: bool = True) -> None:
        self.cluster.session_started(None)  # type: ignore[arg-type]
        if snapshot:
            self.budgets.snapshot_applied()

    def call(self, outcomes: list[bool] | None = None) -> str:
        """One call; ``outcomes``: each attempt's success, the last one repeating."""
        plays = list(outcomes or [True])
        attempts = 0

        def op() -> str:
            nonlocal attempts
            ok = plays[min(attempts, len(plays) - 1)]
            attempts += 1
            if not ok:
                raise ConnectionError("upstream down")
            return "ok"

        try:
            return self.fb.app("order-processor", method="orders").call(op)
        except RateLimitedError:
            return "refused"
        except ConnectionError:
            return "failed"

    def push(self, *shares: BudgetShare) -> None:
        self.cluster.on_response(agent_pb2.ConnectResponse(
            budget_shares=agent_pb2.BudgetShares(shares=[s.to_proto() for s in shares])))

    def take(self) -> list[agent_pb2.ConnectRequest]:
        return self.cluster.take_messages()

    def share(self, key: BudgetKey = RATE_KEY) -> float:
        return self.fb._budgets.share(key)


def usage(messages: list[agent_pb2.ConnectRequest]) -> dict[BudgetKey, agent_pb2.BudgetUsage]:
    out: dict[BudgetKey, agent_pb2.BudgetUsage] = {}
    for m in messages:
        if m.HasField("report"):
            for entry in m.report.budgets:
                key = BudgetKey.from_proto(entry.key)
                assert key not in out, "at most one entry per key per flush"
                out[key] = entry
    return out


def acks(messages: list[agent_pb2.ConnectRequest]) -> list[tuple[BudgetKey, int]]:
    return [(BudgetKey.from_proto(a.key), a.generation)
            for m in messages if m.HasField("report") for a in m.report.share_acks]


def counts(entry: agent_pb2.BudgetUsage) -> tuple[int, int, int, float]:
    return (entry.admitted, entry.refused, entry.first_attempts,
            round(entry.interval.ToNanoseconds() / 1e9, 6))


# -- usage ------------------------------------------------------------------------------


def test_usage_counts_admitted_and_refused_calls_and_retries_per_key() -> None:
    fx = Fixture()
    fx.connect()
    assert usage(fx.take()) == {}  # the first look marks where counting starts
    assert [fx.call() for _ in range(3)] == ["ok"] * 3
    assert fx.call([False, True]) == "ok"  # a first attempt and one retry (it gets a token)
    fx.clock.advance(USAGE_INTERVAL)
    entries = usage(fx.take())
    # Rate limit: 4 first attempts + 1 counted retry admitted, none refused.
    assert counts(entries[RATE_KEY]) == (5, 0, 0, USAGE_INTERVAL)
    # Retry budget: 1 retry made of 4 first attempts, none skipped.
    assert counts(entries[RETRY_KEY]) == (1, 0, 4, USAGE_INTERVAL)


def test_refused_calls_and_skipped_retries_are_reported_as_refused() -> None:
    fx = Fixture()
    fx.connect()
    fx.take()
    assert fx.call([False]) == "failed"  # first attempt + 0 retries: ratio 0.5 of 1 < 1
    results = [fx.call() for _ in range(12)]  # 10 tokens at first, one already taken
    assert results.count("refused") == 3
    fx.clock.advance(USAGE_INTERVAL)
    entries = usage(fx.take())
    assert counts(entries[RATE_KEY])[:2] == (10, 3)
    assert counts(entries[RETRY_KEY])[:3] == (0, 1, 10)


def test_a_busy_key_reports_once_per_usage_interval_and_nothing_in_between() -> None:
    fx = Fixture()
    fx.connect()
    fx.take()
    fx.call()
    fx.clock.advance(USAGE_INTERVAL / 2)
    assert usage(fx.take()) == {}
    assert not fx.budgets.has_pending()
    fx.clock.advance(USAGE_INTERVAL / 2)
    assert fx.budgets.has_pending()
    assert counts(usage(fx.take())[RATE_KEY])[0] == 1


def test_a_key_that_stops_calling_reports_zero_at_once_then_a_zero_heartbeat() -> None:
    fx = Fixture()
    fx.connect()
    fx.take()
    fx.call()
    fx.clock.advance(USAGE_INTERVAL)
    assert counts(usage(fx.take())[RATE_KEY])[0] == 1
    fx.clock.advance(USAGE_INTERVAL)
    # Demand fell to zero: said at once, so the server frees the share at its next refresh.
    assert counts(usage(fx.take())[RATE_KEY]) == (0, 0, 0, USAGE_INTERVAL)
    fx.clock.advance(USAGE_INTERVAL)
    assert usage(fx.take()) == {}
    fx.clock.advance(IDLE_USAGE_INTERVAL)
    assert counts(usage(fx.take())[RATE_KEY]) == (0, 0, 0, IDLE_USAGE_INTERVAL + USAGE_INTERVAL)


def test_a_key_never_called_still_sends_zero_heartbeats() -> None:
    fx = Fixture()
    fx.connect()
    fx.take()
    fx.clock.advance(IDLE_USAGE_INTERVAL)
    assert set(usage(fx.take())) == {RATE_KEY, RETRY_KEY}


def test_no_usage_is_sent_while_disconnected_and_counts_restart_with_the_next_stream() -> None:
    fx = Fixture()
    fx.connect()
    fx.take()
    fx.cluster.session_ended()
    fx.call()
    fx.clock.advance(10 * IDLE_USAGE_INTERVAL)
    assert usage(fx.take()) == {}
    fx.connect()
    fx.take()
    fx.call()
    fx.clock.advance(USAGE_INTERVAL)
    assert counts(usage(fx.take())[RATE_KEY]) == (1, 0, 0, USAGE_INTERVAL)


def test_a_policy_change_that_renews_a_bucket_reports_from_the_new_one() -> None:
    fx = Fixture()
    fx.connect()
    fx.take()
    fx.call()
    fx.call()
    fx.fb.set_policies(ResolvedPolicies("default", "checkout", (
        target(rate_limit=RateLimitPolicy("ordersLimit", limit=20, period=1.0)),)))
    fx.call()
    fx.clock.advance(USAGE_INTERVAL)
    entries = usage(fx.take())
    assert counts(entries[RATE_KEY])[0] == 1  # the old bucket's two calls were before the swap
    assert RETRY_KEY not in entries  # no longer bound


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 600), st.integers(0, 600), st.integers(1, 5))
def test_reports_hold_every_entry_once_and_no_message_holds_more_than_its_limit(
        n_budgets: int, n_acks: int, per: int) -> None:
    key = RATE_KEY.to_proto()
    budgets = [agent_pb2.BudgetUsage(key=key, admitted=i) for i in range(n_budgets)]
    share_acks = [agent_pb2.BudgetShareAck(key=key, generation=i) for i in range(n_acks)]
    breakers = [agent_pb2.BreakerOutcomes(runs=[1]) for _ in range(per + 1)]
    reports = pack_reports(breakers, ReportLimits(max_breakers=per), iter(range(10**6)),
                           budgets, share_acks)
    assert [u.admitted for r in reports for u in r.budgets] == list(range(n_budgets))
    assert [a.generation for r in reports for a in r.share_acks] == list(range(n_acks))
    assert all(len(r.budgets) <= per and len(r.share_acks) <= per and len(r.breakers) <= per
               for r in reports)
    assert len(reports) == max(2, -(-max(n_budgets, n_acks) // per))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("call"), st.lists(st.booleans(), min_size=1, max_size=3)),
    st.tuples(st.just("advance"), st.sampled_from([0.01, 0.05, 0.1, 0.3, 1.5])),
    st.tuples(st.just("flush"), st.none()),
), max_size=60))
def test_usage_entries_add_up_to_every_count_once_and_their_intervals_to_the_time(
        steps: list[tuple[str, Any]]) -> None:
    fx = Fixture()
    fx.connect()
    start = fx.clock.monotonic()
    seen: dict[BudgetKey, list[agent_pb2.BudgetUsage]] = {RATE_KEY: [], RETRY_KEY: []}

    def flush() -> None:
        for key, entry in usage(fx.take()).items():
            seen[key].append(entry)

    for action, arg in steps:
        if action == "call":
            fx.call(arg)
        elif action == "advance":
            fx.clock.advance(arg)
        else:
            flush()
    fx.clock.advance(IDLE_USAGE_INTERVAL)  # whatever is pending is due now
    flush()
    limiter = fx.fb._budgets.budgets().get(RATE_KEY)
    retry_budget = fx.fb._budgets.budgets().get(RETRY_KEY)
    want_rate = (0, 0) if limiter is None else (limiter.admitted, limiter.refused)
    assert (sum(e.admitted for e in seen[RATE_KEY]),
            sum(e.refused for e in seen[RATE_KEY])) == want_rate
    first, made, skipped = (0, 0, 0) if retry_budget is None else retry_budget.totals()
    assert (sum(e.admitted for e in seen[RETRY_KEY]), sum(e.refused for e in seen[RETRY_KEY]),
            sum(e.first_attempts for e in seen[RETRY_KEY])) == (made, skipped, first)
    elapsed = fx.clock.monotonic() - start
    for entries in seen.values():
        assert entries, "at least the final entry"
        assert abs(sum(e.interval.ToNanoseconds() for e in entries) / 1e9 - elapsed) < 1e-6


# -- shares -----------------------------------------------------------------------------


def test_a_pushed_share_is_enforced_at_once_without_a_burst_and_acked_once() -> None:
    fx = Fixture()
    fx.connect()
    fx.take()
    assert [fx.call() for _ in range(4)] == ["ok"] * 4  # 6 tokens left of the whole budget
    fx.push(BudgetShare(RATE_KEY, 0.3, fleet_size=3, lease=30.0, generation=7))
    assert fx.share() == 0.3
    # Depth 3 (0.3 x burst 10), rate 3/s: the 6 tokens are cut to 3, none are added.
    assert [fx.call() for _ in range(4)] == ["ok"] * 3 + ["refused"]
    fx.clock.advance(1 / 3)
    assert [fx.call() for _ in range(2)] == ["ok", "refused"]
    assert acks(fx.take()) == [(RATE_KEY, 7)]
    assert acks(fx.take()) == []


def test_shares_for_keys_not_bound_here_are_ignored_and_not_acked() -> None:
    fx = Fixture()
    fx.connect()
    stranger = BudgetKey("prod", "resiliency", BudgetKind.RATE_LIMIT, TargetKind.APP,
                         "payments", app_id="checkout")
    fx.push(BudgetShare(stranger, 0.5, fleet_size=2, lease=30.0, generation=1))
    assert acks(fx.take()) == []
    assert fx.budgets.ignored == 1
    assert fx.fb._budgets.pushed(stranger) is None


def test_a_share_sent_before_the_first_snapshot_applies_with_it() -> None:
    fx = Fixture(ResolvedPolicies("default", "checkout", ()))
    early = BudgetShare(RATE_KEY, 0.5, fleet_size=2, lease=30.0, generation=1)
    fx.push(early)  # the server may push a new instance's share before its snapshot
    fx.connect(snapshot=False)
    fx.fb.set_policies(POLICIES)
    fx.budgets.snapshot_applied()
    assert fx.share() == 0.5
    assert acks(fx.take()) == [(RATE_KEY, 1)]


def test_an_older_generation_on_the_same_stream_is_stale_and_the_newer_one_is_acked() -> None:
    fx = Fixture()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.2, fleet_size=5, lease=30.0, generation=5))
    fx.push(BudgetShare(RATE_KEY, 0.9, fleet_size=5, lease=30.0, generation=4))
    assert fx.share() == 0.2
    assert acks(fx.take()) == [(RATE_KEY, 5)]


def test_a_new_stream_accepts_any_generation_a_restarted_server_counts_afresh() -> None:
    fx = Fixture()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.2, fleet_size=5, lease=30.0, generation=9))
    fx.cluster.session_ended()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.4, fleet_size=5, lease=30.0, generation=1))
    assert fx.share() == 0.4
    assert acks(fx.take()) == [(RATE_KEY, 1)]


def test_a_share_outside_zero_to_one_is_ignored() -> None:
    fx = Fixture()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 1.5, fleet_size=1, lease=30.0, generation=1))
    assert fx.share() == 1.0 and fx.budgets.ignored == 1


def test_a_policy_that_drops_a_budget_drops_its_share_and_fleet_size() -> None:
    fx = Fixture()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.25, fleet_size=4, lease=30.0, generation=1))
    fx.fb.set_policies(ResolvedPolicies("default", "checkout", (target(circuit_breaker=CB),)))
    assert fx.fb._budgets.pushed(RATE_KEY) is None
    assert fx.fb._budgets.fleet_sizes() == {}
    fx.fb.set_policies(POLICIES)  # bound again: alone until told otherwise
    assert fx.share() == 1.0


def test_a_disconnect_keeps_a_leased_share_and_drops_an_unleased_one() -> None:
    fx = Fixture()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.25, fleet_size=4, lease=30.0, generation=1),
            BudgetShare(RETRY_KEY, 0.5, fleet_size=4, lease=0.0, generation=1))
    fx.cluster.session_ended()
    assert fx.share(RATE_KEY) == 0.25  # until its lease ends
    assert fx.share(RETRY_KEY) == 0.25  # no lease: the fallback share, 1/4, at once


def test_closing_the_agent_returns_every_share_to_the_fallback() -> None:
    fx = Fixture()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.5, fleet_size=4, lease=30.0, generation=1))
    fx.cluster.session_ended(closing=True)
    assert fx.share() == 0.25


async def test_a_lease_that_ends_unrenewed_returns_to_one_over_the_fleet_size() -> None:
    fx = Fixture()
    fx.cluster.bind(asyncio.get_running_loop())
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.5, fleet_size=4, lease=0.02, generation=1))
    assert fx.share() == 0.5
    await eventually_async(lambda: fx.share() == 0.25, what="the fallback share 1/4")


async def test_a_renewed_lease_keeps_the_share_past_the_first_lease() -> None:
    fx = Fixture()
    fx.cluster.bind(asyncio.get_running_loop())
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, 0.5, fleet_size=4, lease=0.05, generation=1))
    fx.push(BudgetShare(RATE_KEY, 0.5, fleet_size=4, lease=60.0, generation=2))
    first = fx.fb._budgets.pushed(RATE_KEY)
    await asyncio.sleep(0.1)  # past the first lease: its timer was cancelled
    assert fx.fb._budgets.pushed(RATE_KEY) is first and fx.share() == 0.5


async def test_the_flusher_is_woken_to_send_an_ack_at_once() -> None:
    fx = Fixture()
    sent: list[agent_pb2.ConnectRequest] = []

    async def send(message: agent_pb2.ConnectRequest) -> None:
        sent.append(message)

    fx.cluster.bind(asyncio.get_running_loop())
    fx.connect()
    flusher = asyncio.create_task(fx.cluster.run_flusher(send))
    try:
        await eventually_async(lambda: not fx.cluster.has_pending())
        fx.push(BudgetShare(RATE_KEY, 0.5, fleet_size=2, lease=30.0, generation=3))
        await eventually_async(lambda: acks(sent) == [(RATE_KEY, 3)], what="the ack sent")
    finally:
        flusher.cancel()
        await asyncio.gather(flusher, return_exceptions=True)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.5, 1.0])
def test_the_fleet_size_told_is_kept_for_the_fallback(share: float) -> None:
    fx = Fixture()
    fx.connect()
    fx.push(BudgetShare(RATE_KEY, share, fleet_size=8, lease=30.0, generation=1))
    assert fx.fb._budgets.fleet_sizes() == {RATE_KEY: 8}
    fx.fb._budgets.expire_share(RATE_KEY)
    assert fx.share() == 1 / 8
