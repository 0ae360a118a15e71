"""Fleet budgets in the agent (docs/budgets.md): rate limits and retry budgets enforced
from the instance's share, sync and async alike, on a manual clock."""

from __future__ import annotations

from typing import Any

import pytest

from fusebox.agent import RateLimitedError
from fusebox.agent.budget import BudgetKey, BudgetKind, BudgetShare, budget_key
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    FallbackPolicy,
    FallbackResponse,
    RateLimitPolicy,
    RateLimitScope,
    RetryBudgetPolicy,
    RetryPolicy,
    TargetKind,
    WhenExceeded,
)
from tests.agent.harness import MODES, Harness, Script, app_target, policies

RETRY = RetryPolicy("retry", duration=1.0, max_retries=3)
CANNED = FallbackPolicy("canned", response=FallbackResponse(503, (), b"busy"))


def limit(n: int = 2, period: float = 1.0, **kwargs: Any) -> RateLimitPolicy:
    return RateLimitPolicy("ordersLimit", limit=n, period=period, **kwargs)


def budget(ratio: float = 0.5, floor: float = 0.0, window: float = 10.0) -> RetryBudgetPolicy:
    return RetryBudgetPolicy("ordersRetries", ratio=ratio, window=window,
                             min_retries_per_second=floor)


def key_of(h: Harness, kind: BudgetKind = BudgetKind.RATE_LIMIT) -> BudgetKey:
    [target] = h.fb.policies.targets  # type: ignore[union-attr]
    return budget_key(target, kind, "checkout")


# ---- rate limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_call_over_the_limit_is_refused_without_calling(mode: str) -> None:
    h = Harness(mode, policies(app_target(rate_limit=limit(2))))
    script = Script("ok")
    assert [h.call(script), h.call(script)] == ["ok", "ok"]
    with pytest.raises(RateLimitedError) as caught:
        h.call(script)
    assert script.calls == 2
    error = caught.value
    assert (error.target, error.policy, error.retry_after) == (
        "order-processor:orders", "ordersLimit", 0.5)
    stats = h.fb.stats()["order-processor:orders"]
    assert (stats.calls, stats.successes, stats.failures, stats.rate_limited) == (3, 2, 1, 1)


@pytest.mark.parametrize("mode", MODES)
def test_tokens_come_back_at_the_limits_rate(mode: str) -> None:
    h = Harness(mode, policies(app_target(rate_limit=limit(2))))
    script = Script("ok")
    h.outcomes(script, 3)
    h.clock.advance(0.5)  # one token: limit 2 per second
    assert [type(r).__name__ for r in h.outcomes(script, 2)] == ["str", "RateLimitedError"]


@pytest.mark.parametrize("mode", MODES)
def test_a_fallback_answers_a_refused_call(mode: str) -> None:
    h = Harness(mode, policies(app_target(rate_limit=limit(1), fallback=CANNED)))
    script = Script("ok")
    assert h.call(script) == "ok"
    assert h.call(script) == CANNED.response
    stats = h.fb.stats()["order-processor:orders"]
    assert (stats.fallbacks, stats.rate_limited, script.calls) == (1, 1, 1)


@pytest.mark.parametrize("mode", MODES)
def test_wait_mode_sleeps_its_turn_with_the_callers_clock(mode: str) -> None:
    waiting = limit(2, when_exceeded=WhenExceeded.WAIT, max_wait=1.0)
    h = Harness(mode, policies(app_target(rate_limit=waiting)))
    script = Script("ok")
    assert h.outcomes(script, 4) == ["ok"] * 4
    assert h.clock.sleeps == [0.5, 0.5]  # each waiter booked the next free turn
    assert h.fb.stats()["order-processor:orders"].rate_limited == 0


@pytest.mark.parametrize("mode", MODES)
def test_wait_mode_refuses_a_turn_beyond_max_wait(mode: str) -> None:
    waiting = limit(2, when_exceeded=WhenExceeded.WAIT, max_wait=0.4)
    h = Harness(mode, policies(app_target(rate_limit=waiting)))
    script = Script("ok")
    results = h.outcomes(script, 3)
    assert isinstance(results[2], RateLimitedError) and h.clock.sleeps == []


@pytest.mark.parametrize("mode", MODES)
def test_a_retry_without_a_token_is_skipped_and_the_call_ends_with_its_last_failure(
    mode: str,
) -> None:
    # One call per 4 s, two at once: the first attempt and the retry 1 s later take the
    # two tokens; the next retry, 1 s after that, would find half a token: it is skipped.
    h = Harness(mode, policies(app_target(retry=RETRY, rate_limit=limit(1, 4.0, burst=2))))
    script = Script(ConnectionError("down"))
    with pytest.raises(ConnectionError) as caught:
        h.call(script)
    assert not isinstance(caught.value, RateLimitedError)
    stats = h.fb.stats()["order-processor:orders"]
    assert script.calls == 2 and (stats.retries, stats.rate_limited) == (1, 1)
    assert h.clock.sleeps == [1.0]


@pytest.mark.parametrize("mode", MODES)
def test_retries_need_no_token_when_they_do_not_count(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=RETRY,
                                          rate_limit=limit(1, count_retries=False))))
    script = Script(ConnectionError("down"))
    with pytest.raises(ConnectionError):
        h.call(script)
    assert script.calls == 4 and h.fb.stats()["order-processor:orders"].rate_limited == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_waiting_retry_adds_its_turn_to_the_back_off(mode: str) -> None:
    waiting = limit(1, burst=1, period=4.0, when_exceeded=WhenExceeded.WAIT, max_wait=5.0)
    h = Harness(mode, policies(app_target(retry=RetryPolicy("r", duration=1.0, max_retries=1),
                                          rate_limit=waiting)))
    script = Script(ConnectionError("down"), "ok")
    assert h.call(script) == "ok"
    assert h.clock.sleeps == [4.0]  # 1 s of back-off + 3 s until the bucket's next token


@pytest.mark.parametrize("mode", MODES)
def test_every_method_of_an_app_shares_its_rate_limit(mode: str) -> None:
    h = Harness(mode, policies(app_target(rate_limit=limit(2))))
    script = Script("ok")
    h.call(script, method="orders")
    h.call(script, method="refunds")
    with pytest.raises(RateLimitedError):
        h.call(script, method=None)


def test_the_caller_is_part_of_an_app_scoped_key_and_not_of_a_fleet_scoped_one() -> None:
    app_scoped = app_target(rate_limit=limit())
    fleet_scoped = app_target(rate_limit=limit(scope=RateLimitScope.FLEET))
    assert budget_key(app_scoped, BudgetKind.RATE_LIMIT, "checkout") == BudgetKey(
        "default", "resiliency", BudgetKind.RATE_LIMIT, TargetKind.APP, "order-processor",
        app_id="checkout")
    assert budget_key(fleet_scoped, BudgetKind.RATE_LIMIT, "checkout").app_id == ""
    # A retry budget is always the caller's: its ratio is over the caller's first attempts.
    with_budget = app_target(rate_limit=limit(scope=RateLimitScope.FLEET), retry_budget=budget())
    assert budget_key(with_budget, BudgetKind.RETRY_BUDGET, "checkout").app_id == "checkout"


@pytest.mark.parametrize("mode", MODES)
def test_new_policies_keep_an_unchanged_limits_bucket_and_renew_a_changed_one(mode: str) -> None:
    h = Harness(mode, policies(app_target(rate_limit=limit(2))))
    script = Script("ok")
    h.outcomes(script, 2)
    h.fb.set_policies(policies(app_target(rate_limit=limit(2), timeout=None)))
    assert isinstance(h.outcomes(script, 1)[0], RateLimitedError)  # the same bucket, empty
    h.fb.set_policies(policies(app_target(rate_limit=limit(3))))
    assert h.outcomes(script, 3) == ["ok"] * 3  # a new policy: a new, full bucket


@pytest.mark.parametrize("mode", MODES)
def test_a_pushed_share_replaces_the_local_one_without_adding_tokens(mode: str) -> None:
    h = Harness(mode, policies(app_target(rate_limit=limit(4, burst=4))))
    script = Script("ok")
    key = key_of(h)
    h.outcomes(script, 1)  # 3 tokens left of the whole budget (alone: share 1)
    h.fb._budgets.apply_share(BudgetShare(key, 0.5, fleet_size=2, lease=2.0, generation=1))
    # Half the fleet's budget: a depth of 2, rate 2/s; the 3 tokens are cut to 2.
    assert [type(r).__name__ for r in h.outcomes(script, 3)] == ["str", "str", "RateLimitedError"]
    h.clock.advance(0.5)
    assert [type(r).__name__ for r in h.outcomes(script, 2)] == ["str", "RateLimitedError"]
    # The lease ends unrenewed: back to the fallback share, 1/2 (the fleet size last told).
    h.fb._budgets.expire_share(key)
    assert h.fb._budgets.share(key) == 0.5


@pytest.mark.parametrize("mode", MODES)
def test_a_zero_share_refuses_every_call_until_a_share_comes(mode: str) -> None:
    h = Harness(mode, policies(app_target(rate_limit=limit(4))))
    script = Script("ok")
    key = key_of(h)
    h.outcomes(script, 1)
    h.fb._budgets.apply_share(BudgetShare(key, 0.0, fleet_size=4))
    [refused] = h.outcomes(script, 1)
    assert isinstance(refused, RateLimitedError) and "is zero for now" in str(refused)
    h.fb._budgets.apply_share(BudgetShare(key, 0.25, fleet_size=4, generation=2))
    assert isinstance(h.outcomes(script, 1)[0], RateLimitedError)  # comes back empty
    h.clock.advance(1.0)
    assert h.outcomes(script, 1) == ["ok"]


# ---- retry budgets ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_spent_retry_budget_skips_the_retry_and_returns_the_last_failure(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=RETRY, retry_budget=budget(ratio=0.5))))
    ok, failing = Script("ok"), Script(ConnectionError("down"))
    h.outcomes(ok, 3)  # 3 first attempts + the failing call's own: 2 retries in the budget
    with pytest.raises(ConnectionError) as caught:
        h.call(failing)
    assert failing.calls == 3
    assert "failed after 3 attempts" in caught.value.__notes__[0]
    stats = h.fb.stats()["order-processor:orders"]
    assert (stats.retries, stats.retries_skipped) == (2, 1)
    assert h.clock.sleeps == [1.0, 1.0]  # a skipped retry waits for nothing


@pytest.mark.parametrize("mode", MODES)
def test_a_skipped_retry_falls_back(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=RETRY, retry_budget=budget(ratio=0.1),
                                          fallback=CANNED)))
    failing = Script(ConnectionError("down"))
    assert h.call(failing) == CANNED.response
    assert failing.calls == 1
    stats = h.fb.stats()["order-processor:orders"]
    assert (stats.fallbacks, stats.retries_skipped, stats.retries) == (1, 1, 0)


@pytest.mark.parametrize("mode", MODES)
def test_the_floor_allows_retries_without_first_attempts(mode: str) -> None:
    # ratio 0.01 of one first attempt is no retry; the floor gives 0.2/s x 10 s = 2.
    h = Harness(mode, policies(app_target(retry=RETRY,
                                          retry_budget=budget(ratio=0.01, floor=0.2))))
    failing = Script(ConnectionError("down"))
    with pytest.raises(ConnectionError):
        h.call(failing)
    assert failing.calls == 3


@pytest.mark.parametrize("mode", MODES)
def test_first_attempts_age_out_of_the_window(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=RETRY, retry_budget=budget(ratio=0.5))))
    h.outcomes(Script("ok"), 5)
    h.clock.advance(10.0)  # the window: the 5 first attempts no longer count
    failing = Script(ConnectionError("down"))
    with pytest.raises(ConnectionError):
        h.call(failing)
    assert failing.calls == 1  # its own first attempt: 0.5 of a retry


@pytest.mark.parametrize("mode", MODES)
def test_calls_the_breaker_rejects_are_not_first_attempts(mode: str) -> None:
    breaker = CircuitBreakerPolicy("cb", timeout=60.0, trip="consecutiveFailures >= 1")
    h = Harness(mode, policies(app_target(retry=RetryPolicy("r", duration=1.0, max_retries=0),
                                          circuit_breaker=breaker,
                                          retry_budget=budget(ratio=1.0))))
    h.outcomes(Script(ConnectionError("down")), 4)  # one failure opens it; 3 rejected
    [(_, enforcer)] = [
        (k, e) for k, e in h.fb._budgets.budgets().items() if k.kind is BudgetKind.RETRY_BUDGET
    ]
    assert enforcer.allow_retry(h.clock.now)  # the one first attempt made: one retry
    assert not enforcer.allow_retry(h.clock.now)


@pytest.mark.parametrize("mode", MODES)
def test_a_target_without_budgets_keeps_the_flat_path(mode: str) -> None:
    breaker = CircuitBreakerPolicy("cb")
    h = Harness(mode, policies(app_target(circuit_breaker=breaker),
                               app_target("limited", circuit_breaker=breaker,
                                          rate_limit=limit())))
    plain, limited = h.fb.app("order-processor"), h.fb.app("limited")
    plain._refresh()
    limited._refresh()
    assert plain._plan is not None and plain._plan.breaker_only
    assert limited._plan is not None and not limited._plan.breaker_only
