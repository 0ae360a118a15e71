"""The sync and async paths share one implementation of their decisions.

A change made once, in the executor's shared code, shows on both paths; and
the flat path (one breaker, nothing else), which the handles run inline,
settles an attempt the same way on both.
"""

from __future__ import annotations

from typing import Any

import pytest

from fusebox.agent import BreakerOpenError, BreakerState, FallbackResponse
from fusebox.agent import _executor as executor
from fusebox.agent.classify import FAILURE, SUCCESS, Outcome
from fusebox.agent.policy import CircuitBreakerPolicy, FallbackPolicy, RetryPolicy
from tests.agent.harness import MODES, Harness, Script, app_target, policies

pytestmark = pytest.mark.parametrize("mode", MODES)

NAME = "order-processor:orders"


def breaker(trip: str = "consecutiveFailures >= 2") -> CircuitBreakerPolicy:
    return CircuitBreakerPolicy("cb", trip=trip, timeout=30.0)


def retry_and_fallback() -> dict[str, Any]:
    return {
        "retry": RetryPolicy("retry", duration=1.0, max_retries=2),
        "fallback": FallbackPolicy("fb", response=FallbackResponse(200, body=b"cached")),
    }


# -- one implementation: patched once, changed on both paths ---------------------------


def test_a_retry_decision_changed_once_changes_both_paths(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor.RetryContext, "next_delay", lambda self: None)
    h = Harness(mode, policies(app_target(retry=retry_and_fallback()["retry"])))
    script = Script(ConnectionError("down"))
    with pytest.raises(ConnectionError) as caught:
        h.call(script)
    assert script.calls == 1
    assert h.clock.sleeps == []
    assert not getattr(caught.value, "__notes__", None)


def test_a_fallback_decision_changed_once_changes_both_paths(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "fallback_matches", lambda policy, outcome: False)
    h = Harness(mode, policies(app_target(**retry_and_fallback())))
    script = Script(ConnectionError("down"))
    with pytest.raises(ConnectionError):
        h.call(script)
    assert script.calls == 3
    assert h.fb.stats()[NAME].fallbacks == 0


def test_a_settle_rule_changed_once_changes_both_paths(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_settle = executor.settle

    def strict(plan: Any, token: int | None, result: Any, retrying: Any, start: float) -> Any:
        if result == 200:  # today's rule: a 200 is a failure
            result = executor.Raised(ConnectionError("200"))
        return real_settle(plan, token, result, retrying, start)

    monkeypatch.setattr(executor, "settle", strict)
    h = Harness(mode, policies(app_target(**retry_and_fallback(), circuit_breaker=breaker(
        "consecutiveFailures >= 10"))))
    script = Script(200)
    # A classifier of its own: with the default one, a first attempt's success is
    # settled inline by both drivers (see the next test), never by ``settle``.
    assert h.call(script, classifier=errors_fail) == FallbackResponse(200, body=b"cached")
    assert script.calls == 3
    assert h.fb.stats()[NAME].fallbacks == 1


def test_a_first_success_settled_inline_counts_and_releases_alike(mode: str) -> None:
    h = Harness(mode, policies(app_target(**retry_and_fallback(), circuit_breaker=breaker(
        "consecutiveFailures >= 1"))))
    assert h.call(Script(ConnectionError("down"))) == FallbackResponse(200, body=b"cached")
    assert h.fb.breaker_states()[NAME] is BreakerState.OPEN
    h.clock.advance(30.0)  # half-open: the next call is the probe
    assert h.call(Script("ok")) == "ok"
    # The probe's success released the breaker (closing it) and was counted.
    assert h.fb.breaker_states()[NAME] is BreakerState.CLOSED
    stats = h.fb.stats()[NAME]
    assert (stats.calls, stats.successes, stats.failures) == (2, 1, 1)


# -- the flat path settles alike on both paths --------------------------------------------


def errors_fail(result: Any, error: BaseException | None) -> Outcome:
    """What the default classifier says, from a classifier of a test's own."""
    return FAILURE if error is not None else SUCCESS


def failing_result(result: Any, error: BaseException | None) -> Outcome:
    return FAILURE if error is None and result == "bad" else SUCCESS


def test_flat_path_a_failing_result_is_returned_released_as_a_failure_and_counted(
    mode: str,
) -> None:
    h = Harness(mode, policies(app_target(circuit_breaker=breaker())))
    assert h.outcomes(Script("bad"), 2, classifier=failing_result) == ["bad", "bad"]
    stats = h.fb.stats()[NAME]
    assert (stats.calls, stats.successes, stats.failures) == (2, 0, 2)
    assert h.fb.breaker_states()[NAME] is BreakerState.OPEN


def test_flat_path_an_exception_the_classifier_accepts_is_raised_and_counted_a_success(
    mode: str,
) -> None:
    h = Harness(mode, policies(app_target(circuit_breaker=breaker())))
    out = h.outcomes(Script(LookupError("not found")), 3, classifier=lambda r, e: SUCCESS)
    assert [type(x) for x in out] == [LookupError] * 3
    stats = h.fb.stats()[NAME]
    assert (stats.calls, stats.successes, stats.failures) == (3, 3, 0)
    assert h.fb.breaker_states()[NAME] is BreakerState.CLOSED


class Interrupt(BaseException):
    """Not an ``Exception``: an interruption, not an outcome of the operation."""


def test_flat_path_an_interruption_is_raised_released_as_a_failure_and_not_counted(
    mode: str,
) -> None:
    h = Harness(mode, policies(app_target(circuit_breaker=breaker())))
    for _ in range(2):
        with pytest.raises(Interrupt):
            h.call(Script(Interrupt()))
    assert h.fb.stats()[NAME].calls == 0
    assert h.fb.breaker_states()[NAME] is BreakerState.OPEN


def test_flat_path_a_rejection_is_counted_once_as_rejected_and_failed(mode: str) -> None:
    h = Harness(mode, policies(app_target(circuit_breaker=breaker())))
    out = h.outcomes(Script(ConnectionError("down")), 3)
    assert [type(x) for x in out] == [ConnectionError, ConnectionError, BreakerOpenError]
    stats = h.fb.stats()[NAME]
    assert (stats.calls, stats.failures, stats.rejected) == (3, 3, 1)
