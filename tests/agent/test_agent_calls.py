"""Guarded calls, sync and async alike: Dapr's conformance cases through the public API."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from fusebox.agent import (
    BreakerOpenError,
    BreakerState,
    PolicyTimeoutError,
    current_attempt_deadline,
)
from fusebox.agent.classify import FAILURE, Outcome, http_outcome
from fusebox.agent.policy import (
    BackoffKind,
    CircuitBreakerPolicy,
    RetryPolicy,
    StatusCodes,
    TimeoutPolicy,
)
from tests.agent.harness import MODES, Harness, Script, app_target, policies

pytestmark = pytest.mark.parametrize("mode", MODES)


@dataclass
class Response:
    status: int
    retry_after: float | None = None


def http_classifier(result: Any, error: BaseException | None) -> Outcome:
    if error is not None:
        return FAILURE
    return http_outcome(result.status, result.retry_after)


def retry(**kwargs: Any) -> RetryPolicy:
    return RetryPolicy("retry", **{"duration": 5.0, **kwargs})


def breaker(trip: str, **kwargs: Any) -> CircuitBreakerPolicy:
    return CircuitBreakerPolicy("cb", trip=trip, **kwargs)


def test_max_retries_2_makes_3_calls_then_reraises_the_last_error(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=retry(max_retries=2))))
    script = Script(ConnectionError("down"))
    with pytest.raises(ConnectionError) as caught:
        h.call(script)
    assert script.calls == 3
    assert h.clock.sleeps == [5.0, 5.0]
    assert "failed after 3 attempts" in caught.value.__notes__[0]


def test_a_success_after_failures_is_returned(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=retry(max_retries=5))))
    script = Script(ConnectionError(), ConnectionError(), "ok")
    assert h.call(script) == "ok"
    assert script.calls == 3


@pytest.mark.parametrize(("status", "calls"), [(500, 3), (501, 1), (400, 1)])
def test_matching_500_retries_500_only_and_returns_the_last_failing_response(
    mode: str, status: int, calls: int
) -> None:
    codes = StatusCodes(((500, 500),))
    h = Harness(mode, policies(app_target(retry=retry(max_retries=2, http_status_codes=codes))))
    script = Script(Response(status))
    result = h.call(script, classifier=http_classifier)
    assert result == Response(status)  # a failing result is returned as is
    assert script.calls == calls


def test_grpc_matching_list_retries_listed_codes_only(mode: str) -> None:
    codes = StatusCodes(((2, 2), (8, 10), (11, 11), (13, 15)))
    h = Harness(mode, policies(app_target(retry=retry(max_retries=1, grpc_status_codes=codes))))

    def classify(code: Any, error: BaseException | None) -> Outcome:
        return Outcome(code == 0, grpc_code=code)

    for code, calls in [(14, 2), (12, 1), (9, 2), (5, 1)]:
        script = Script(code)
        h.call(script, classifier=classify)
        assert script.calls == calls, code


def test_breaker_consecutive_failures_1_under_3_retries_stops_after_2_calls(mode: str) -> None:
    target = app_target(retry=retry(max_retries=3), circuit_breaker=breaker(
        "consecutiveFailures > 1"))
    h = Harness(mode, policies(target))
    script = Script(ConnectionError())
    with pytest.raises(BreakerOpenError) as caught:
        h.call(script)
    assert script.calls == 2
    assert caught.value.breaker == "order-processor:orders"
    assert caught.value.state == "open"


def test_open_breaker_fails_fast_then_half_opens_after_timeout_and_closes(mode: str) -> None:
    h = Harness(mode, policies(app_target(circuit_breaker=breaker(
        "consecutiveFailures > 3", timeout=30.0, max_requests=1))))
    failing = Script(ConnectionError())
    results = h.outcomes(failing, 6)
    assert failing.calls == 4
    assert all(isinstance(r, BreakerOpenError) for r in results[4:])
    h.clock.advance(30.5)
    assert h.fb.breaker_states() == {"order-processor:orders": BreakerState.HALF_OPEN}
    assert h.call(Script("probe")) == "probe"
    assert h.fb.breaker_states() == {"order-processor:orders": BreakerState.CLOSED}


def test_requests_and_total_failures_trips_through_the_agent(mode: str) -> None:
    h = Harness(mode, policies(
        app_target("by-requests", circuit_breaker=breaker("requests > 4")),
        app_target("by-total", circuit_breaker=breaker("totalFailures > 4")),
    ))
    h.outcomes(Script("ok", "ok", "ok", "ok", ConnectionError()), 5, app="by-requests")
    total = Script(*[ConnectionError(), "ok"] * 4, ConnectionError())
    h.outcomes(total, 9, app="by-total")
    assert h.fb.breaker_states() == {
        "by-requests:orders": BreakerState.OPEN,
        "by-total:orders": BreakerState.OPEN,
    }


def test_exponential_retry_waits_grow_without_randomization(mode: str) -> None:
    policy = retry(backoff=BackoffKind.EXPONENTIAL, max_retries=4, randomization_factor=0.0,
                   max_interval=1.0)
    h = Harness(mode, policies(app_target(retry=policy)))
    with pytest.raises(ConnectionError):
        h.call(Script(ConnectionError()))
    assert h.clock.sleeps == pytest.approx([0.5, 0.75, 1.0, 1.0])


def test_retry_after_is_honoured_within_max_interval(mode: str) -> None:
    policy = retry(max_retries=2, honor_retry_after=True, max_interval=10.0, duration=1.0)
    h = Harness(mode, policies(app_target(retry=policy)))
    script = Script(Response(503, retry_after=3.0), Response(429, retry_after=60.0), Response(200))
    assert h.call(script, classifier=http_classifier) == Response(200)
    assert h.clock.sleeps == [3.0, 10.0]


def test_lru_evicts_the_least_recently_used_method_breaker(mode: str) -> None:
    target = app_target(circuit_breaker=breaker("consecutiveFailures > 0"),
                        circuit_breaker_cache_size=2)
    h = Harness(mode, policies(target))
    h.outcomes(Script(ConnectionError()), 1, method="a")  # opens a
    h.call(Script("ok"), method="b")
    assert isinstance(h.outcomes(Script("ok"), 1, method="a")[0], BreakerOpenError)  # a used
    h.call(Script("ok"), method="c")  # evicts b, the least recently used
    assert set(h.fb.breaker_states()) == {"order-processor:a", "order-processor:c"}
    h.call(Script("ok"), method="d")  # evicts a: its open state is forgotten
    assert h.call(Script("fresh"), method="a") == "fresh"


def test_stats_count_calls_retries_and_rejections(mode: str) -> None:
    target = app_target(retry=retry(max_retries=3), circuit_breaker=breaker(
        "consecutiveFailures > 1"))
    h = Harness(mode, policies(target))
    h.outcomes(Script(ConnectionError()), 1)
    stats = h.fb.stats()["order-processor:orders"]
    assert (stats.calls, stats.failures, stats.retries, stats.rejected) == (1, 1, 2, 1)


def test_no_policies_passes_through_and_says_so_once(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(mode, None)
    caplog.set_level("INFO", logger="fusebox.agent")
    script = Script(ConnectionError(), "second")
    assert isinstance(h.outcomes(script, 1)[0], ConnectionError)
    assert h.call(script) == "second"
    notices = [r for r in caplog.records if "pass through" in r.getMessage()]
    assert len(notices) == 1


def test_log_lines_read_as_dapr_prints_them(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    target = app_target(retry=retry(max_retries=3), circuit_breaker=breaker(
        "consecutiveFailures > 1"))
    h = Harness(mode, policies(target))
    caplog.set_level("INFO", logger="fusebox.agent")
    h.outcomes(Script(ConnectionError()), 1)
    assert [r.getMessage() for r in caplog.records] == [
        "Error processing operation endpoint[order-processor, order-processor:orders]. "
        "Retrying in 5s (attempt 2)...",
        'Circuit breaker "order-processor:orders" changed state from closed to open',
        "Error processing operation endpoint[order-processor, order-processor:orders]. "
        "Retrying in 5s (attempt 3)...",
    ]


def test_event_hooks_receive_typed_events(mode: str) -> None:
    target = app_target(retry=retry(max_retries=3), circuit_breaker=breaker(
        "consecutiveFailures > 1"))
    h = Harness(mode, policies(target))
    seen: list[Any] = []
    h.fb.on_retry(lambda e: seen.append(("retry", e.attempt, e.delay)))
    h.fb.on_state_change(lambda e: seen.append(("state", str(e.from_state), str(e.to_state))))
    h.fb.on_retry(lambda e: 1 / 0)  # a broken hook does not break the call
    h.outcomes(Script(ConnectionError()), 1)
    assert seen == [("retry", 2, 5.0), ("state", "closed", "open"), ("retry", 3, 5.0)]


# -- timeouts ---------------------------------------------------------------------


def test_timed_out_attempts_are_failures_and_are_retried(mode: str) -> None:
    target = app_target(timeout=TimeoutPolicy("t", 0.02), retry=retry(max_retries=1))
    h = Harness(mode, policies(target))
    release = threading.Event()
    attempts: list[float | None] = []
    cancelled: list[bool] = []

    def slow() -> str:
        deadline = current_attempt_deadline()
        attempts.append(deadline.timeout if deadline else None)
        release.wait(10)  # abandoned by the agent; released at the end of the test
        return "late"

    async def never() -> str:
        deadline = current_attempt_deadline()
        attempts.append(deadline.timeout if deadline else None)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "unreachable"

    try:
        with pytest.raises(PolicyTimeoutError) as caught:
            h.call_fn(slow, never)
    finally:
        release.set()
    assert attempts == [0.02, 0.02]
    assert isinstance(caught.value, TimeoutError)
    assert h.fb.stats()["order-processor:orders"].timeouts == 2
    if mode == "async":
        assert cancelled == [True, True]
