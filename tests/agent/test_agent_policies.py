"""Policy swaps, validation (NACK), fallbacks, targets and the testing switches."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from fusebox.agent import (
    Agent,
    AsyncAgent,
    BreakerOpenError,
    CallFailure,
    FallbackResponse,
    PolicyError,
    testing,
)
from fusebox.agent.classify import FAILURE, Outcome, http_outcome
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    Direction,
    FallbackPolicy,
    RetryPolicy,
    StatusCodes,
    TargetKind,
    TargetPolicy,
)
from tests.agent.harness import MODES, Harness, Script, app_target, policies

OPEN_AT_FIRST_FAILURE = CircuitBreakerPolicy("cb", trip="consecutiveFailures > 0")


def static(body: bytes, **kwargs: Any) -> FallbackPolicy:
    return FallbackPolicy("fb", response=FallbackResponse(200, body=body), **kwargs)


# -- fallbacks --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_static_fallback_answers_a_final_failure(mode: str) -> None:
    h = Harness(mode, policies(app_target(fallback=static(b"cached"))))
    seen: list[Any] = []
    h.fb.on_fallback(seen.append)
    assert h.call(Script(ConnectionError())) == FallbackResponse(200, body=b"cached")
    assert [e.policy for e in seen] == ["fb"]
    assert h.fb.stats()["order-processor:orders"].fallbacks == 1


@pytest.mark.parametrize("mode", MODES)
def test_fallback_answers_an_open_breaker(mode: str) -> None:
    h = Harness(mode, policies(app_target(circuit_breaker=OPEN_AT_FIRST_FAILURE,
                                          fallback=static(b"degraded"))))
    h.call(Script(ConnectionError()))
    script = Script("never called")
    assert h.call(script) == FallbackResponse(200, body=b"degraded")
    assert script.calls == 0


@pytest.mark.parametrize("mode", MODES)
def test_function_fallback_receives_the_failure(mode: str) -> None:
    failures: list[CallFailure] = []

    def remember(failure: CallFailure) -> str:
        failures.append(failure)
        return "from fallback"

    target = app_target(fallback=FallbackPolicy("fb", function="remember"))
    h = Harness(mode, policies(target), fallbacks={"remember": remember})
    error = ConnectionError("down")
    assert h.call(Script(error)) == "from fallback"
    assert failures[0].error is error and failures[0].target == "order-processor:orders"


def test_async_function_fallback_is_awaited_on_the_async_path() -> None:
    async def later(failure: CallFailure) -> str:
        await asyncio.sleep(0)
        return "async fallback"

    h = Harness("async")
    h.fb.register_fallback("later", later)  # registered first: set_policies validates names
    h.fb.set_policies(policies(app_target(fallback=FallbackPolicy("fb", function="later"))))
    assert h.call(Script(ConnectionError())) == "async fallback"


@pytest.mark.parametrize("mode", MODES)
def test_fallback_applies_only_to_matching_status_codes(mode: str) -> None:
    fallback = static(b"busy", http_status_codes=StatusCodes(((503, 503),)))
    h = Harness(mode, policies(app_target(fallback=fallback)))

    def classify(status: Any, error: BaseException | None) -> Outcome:
        return FAILURE if error else http_outcome(status)

    assert h.call(Script(500), classifier=classify) == 500
    assert h.call(Script(503), classifier=classify) == FallbackResponse(200, body=b"busy")


# -- validation and swaps -----------------------------------------------------------


def test_unknown_fallback_function_or_bad_trip_is_rejected_and_previous_policies_stay() -> None:
    good = policies(app_target(retry=RetryPolicy("r", duration=1.0, max_retries=1)))
    h = Harness("sync", good)
    bad = policies(
        app_target(fallback=FallbackPolicy("fb", function="nowhere")),
        app_target("other", circuit_breaker=CircuitBreakerPolicy("cb", trip="failures >>> 2")),
    )
    with pytest.raises(PolicyError) as caught:
        h.fb.set_policies(bad)
    assert isinstance(caught.value, ValueError)  # so the link NACKs it
    assert "'nowhere'" in str(caught.value) and "failures >>> 2" in str(caught.value)
    assert h.fb.policies is good
    script = Script(ConnectionError(), "ok")
    assert h.call(script) == "ok"


def test_calls_in_flight_keep_their_policies_while_the_next_call_sees_new_ones() -> None:
    h = Harness("sync", policies(app_target(fallback=static(b"old"))))
    started, release = threading.Event(), threading.Event()
    results: list[Any] = []

    def blocked() -> None:
        started.set()
        release.wait(10)
        raise ConnectionError()

    worker = threading.Thread(
        target=lambda: results.append(h.fb.app("order-processor", method="orders").call(blocked))
    )
    worker.start()
    assert started.wait(10)
    h.fb.set_policies(policies(app_target(fallback=static(b"new"))))
    assert h.call(Script(ConnectionError())) == FallbackResponse(200, body=b"new")
    release.set()
    worker.join(10)
    assert results == [FallbackResponse(200, body=b"old")]


async def test_tasks_in_flight_keep_their_policies_while_the_next_call_sees_new_ones() -> None:
    fb = AsyncAgent(app_id="checkout", policies=policies(app_target(fallback=static(b"old"))))
    release = asyncio.Event()
    started = asyncio.Event()

    async def blocked() -> None:
        started.set()
        await release.wait()
        raise ConnectionError()

    in_flight = asyncio.create_task(fb.app("order-processor", method="orders").call(blocked))
    await started.wait()
    fb.set_policies(policies(app_target(fallback=static(b"new"))))
    assert await fb.app("order-processor", method="orders").call(Script(ConnectionError()).coro) \
        == FallbackResponse(200, body=b"new")
    release.set()
    assert await in_flight == FallbackResponse(200, body=b"old")


def test_swaps_under_concurrent_calls_never_mix_policies() -> None:
    bodies = [b"a", b"b"]
    fb = Agent(app_id="checkout", policies=policies(app_target(fallback=static(bodies[0]))))
    errors: list[BaseException] = []
    seen: set[bytes] = set()

    def hammer() -> None:
        try:
            for _ in range(300):
                r = fb.app("order-processor", method="orders").call(Script(ConnectionError()).sync)
                seen.add(r.body)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(100):
        fb.set_policies(policies(app_target(fallback=static(bodies[i % 2]))))
    for t in threads:
        t.join(30)
    assert errors == []
    assert seen <= {b"a", b"b"}
    assert fb.stats()["order-processor:orders"].calls == 900


def test_a_breaker_survives_a_swap_that_keeps_its_policy() -> None:
    target = app_target(circuit_breaker=OPEN_AT_FIRST_FAILURE)
    h = Harness("sync", policies(target))
    h.outcomes(Script(ConnectionError()), 1)
    h.fb.set_policies(policies(target, app_target("unrelated")))
    assert isinstance(h.outcomes(Script("ok"), 1)[0], BreakerOpenError)


# -- targets ------------------------------------------------------------------------


def test_component_targets_use_their_direction_and_name() -> None:
    outbound = TargetPolicy(TargetKind.COMPONENT, "statestore", direction=Direction.OUTBOUND,
                            circuit_breaker=OPEN_AT_FIRST_FAILURE)
    fb = Agent(app_id="checkout", policies=policies(outbound))
    inbound = fb.component("statestore", "inbound")
    for _ in range(2):  # no inbound policy: failures pass through, no breaker opens
        with pytest.raises(ConnectionError):
            inbound.call(Script(ConnectionError()).sync)
    with pytest.raises(ConnectionError):
        fb.component("statestore").call(Script(ConnectionError()).sync)
    with pytest.raises(BreakerOpenError):
        fb.component("statestore").call(Script("ok").sync)


# -- protect ------------------------------------------------------------------------


def test_protect_guards_sync_and_async_functions() -> None:
    fb = Agent(app_id="checkout", policies=policies(app_target(
        retry=RetryPolicy("r", duration=0.0, max_retries=2))))
    sync_script, async_script = Script(ConnectionError(), "s"), Script(ConnectionError(), "a")

    @fb.protect(app="order-processor", method="orders")
    def post_order() -> Any:
        return sync_script.sync()

    @fb.protect(app="order-processor", method="orders")
    async def post_order_async() -> Any:
        return await async_script.coro()

    assert post_order() == "s"
    assert asyncio.run(post_order_async()) == "a"
    assert post_order.__name__ == "post_order"
    with pytest.raises(TypeError):
        fb.protect(app="a", actor="b")


# -- testing switches ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_testing_mode_skips_waits_but_keeps_attempts(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=RetryPolicy("r", duration=30.0, max_retries=2))))
    script = Script(ConnectionError())
    with testing.testing(), pytest.raises(ConnectionError):
        h.call(script)
    assert script.calls == 3
    assert h.clock.sleeps == []
    assert not testing.is_testing()


@pytest.mark.parametrize("mode", MODES)
def test_testing_mode_can_disable_policies(mode: str) -> None:
    h = Harness(mode, policies(app_target(retry=RetryPolicy("r", max_retries=2),
                                          circuit_breaker=OPEN_AT_FIRST_FAILURE)))
    script = Script(ConnectionError(), ConnectionError(), "ok")
    testing.set_testing(True, policies=False)
    try:
        assert isinstance(h.outcomes(script, 1)[0], ConnectionError)
        assert isinstance(h.outcomes(script, 1)[0], ConnectionError)  # no breaker either
        assert h.call(script) == "ok"
    finally:
        testing.set_testing(False)
    assert script.calls == 3


def test_testing_mode_never_starts_a_server_link() -> None:
    with testing.testing(), Agent(app_id="checkout", server="127.0.0.1:9") as fb:
        assert fb.app("order-processor").call(lambda: "direct") == "direct"
        assert fb.policies is None


def test_sync_timeouts_use_a_bounded_pool_and_queued_calls_time_out_unstarted() -> None:
    from fusebox.agent import PolicyTimeoutError
    from fusebox.agent.policy import TimeoutPolicy

    fb = Agent(app_id="checkout", timeout_workers=1,
               policies=policies(app_target(timeout=TimeoutPolicy("t", 0.02))))
    release = threading.Event()
    started: list[str] = []

    def stuck() -> None:
        started.append("stuck")
        release.wait(10)

    try:
        with pytest.raises(PolicyTimeoutError):
            fb.app("order-processor").call(stuck)  # abandoned: still holds the only worker
        with pytest.raises(PolicyTimeoutError):
            fb.app("order-processor").call(lambda: started.append("queued"))
    finally:
        release.set()
        fb.close()
    assert started == ["stuck"]  # the queued call was cancelled before it could start
