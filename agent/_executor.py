"""Running one guarded call: ``fallback(retry(breaker(timeout(operation))))``, as Dapr.

``CallPlan`` is everything a call needs, resolved once per (handle, policy
snapshot); ``call_sync`` and ``call_async`` run it. A call keeps the plan it
started with, so a policy swap never changes a call in flight.

Final failures: a failing *result* (e.g. an HTTP 503 response) is returned as
is; a failing *exception* is re-raised unchanged, with a note recording the
number of attempts. ``BreakerOpenError`` is permanent: it stops the retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import fusebox.agent.testing as _testing
from fusebox.agent._backoff import RetrySchedule
from fusebox.agent._cluster_port import ProbeLeaseRequired
from fusebox.agent._errors import BreakerOpenError, PolicyTimeoutError
from fusebox.agent._live_breaker import Breaker
from fusebox.agent._registry import touch_tick
from fusebox.agent.classify import (
    FAILURE,
    SUCCESS,
    Classifier,
    Outcome,
    default_classifier,
    fallback_matches,
    retry_matches,
)
from fusebox.agent.clock import SYSTEM_CLOCK, Clock
from fusebox.agent.events import EventHooks, FallbackEvent, RetryEvent, StatsCounter
from fusebox.agent.policy import FallbackPolicy, RetryPolicy


@dataclass(frozen=True, slots=True)
class AttemptDeadline:
    """The deadline of the attempt running now (see ``current_attempt_deadline``)."""

    deadline: float  # on the agent clock's monotonic scale
    timeout: float
    clock: Clock

    def remaining(self) -> float:
        """Seconds left before the attempt times out (never negative)."""
        return max(0.0, self.deadline - self.clock.monotonic())


_attempt_deadline: contextvars.ContextVar[AttemptDeadline | None] = contextvars.ContextVar(
    "fusebox_attempt_deadline", default=None
)


def current_attempt_deadline() -> AttemptDeadline | None:
    """The per-attempt deadline of the guarded call running in this context, if any.

    Integrations pass ``remaining()`` to their client's own deadline (HTTP
    read timeout, gRPC ``timeout=``) so the attempt is really interrupted
    instead of abandoned.
    """
    return _attempt_deadline.get()


@dataclass(frozen=True, slots=True)
class CallFailure:
    """What a fallback function receives: the final failure of a guarded call."""

    target: str
    error: BaseException | None  # the exception, or None for a failing result
    result: Any  # the failing result, when there was no exception
    outcome: Outcome


@dataclass(frozen=True, slots=True, eq=False)
class CallPlan:
    """The policies of one target, resolved for one policy snapshot."""

    target: str  # display name: "order-processor:orders"
    operation: str  # for retry log lines: "endpoint[order-processor, order-processor:orders]"
    timeout: float  # seconds per attempt; <= 0: none
    retry: RetryPolicy | None
    breakers: tuple[Breaker, ...]
    fallback: FallbackPolicy | None
    fallback_fn: Callable[..., Any] | None
    classifier: Classifier
    stats: StatsCounter
    hooks: EventHooks
    clock: Clock
    timeouts: TimeoutPool
    touch: bool  # breakers live in an LRU: mark them used on every call
    breaker_only: bool = False  # one breaker and nothing else: the flat hot path
    now: Callable[[], float] = time.monotonic  # clock.monotonic, unwrapped for the system clock
    # Derived, for the hot path: one attribute load each instead of two.
    breaker: Breaker | None = None  # the first (outermost) breaker, if any
    succeeded: Callable[[], object] = int  # stats.success
    failed: Callable[[], object] = int  # stats.failure

    def __post_init__(self) -> None:
        derived = object.__setattr__
        if self.clock is not SYSTEM_CLOCK:
            derived(self, "now", self.clock.monotonic)
        derived(self, "breaker_only", (
            len(self.breakers) == 1 and self.retry is None and self.fallback is None
            and self.timeout <= 0
        ))
        derived(self, "breaker", self.breakers[0] if self.breakers else None)
        derived(self, "succeeded", self.stats.success)
        derived(self, "failed", self.stats.failure)


class TimeoutPool:
    """A bounded pool that runs sync callables under a per-attempt timeout.

    Python cannot interrupt a thread: a timed-out callable keeps running in its
    worker until it returns by itself; the caller stops waiting at the deadline.
    ``max_workers`` caps the threads; a call queued behind busy workers counts
    the queueing against its own timeout and is cancelled if it never started.
    """

    def __init__(self, max_workers: int) -> None:
        self._max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def run(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        timeout: float, target: str, clock: Clock,
    ) -> Any:
        pool = self._pool or self._start()
        deadline = AttemptDeadline(clock.monotonic() + timeout, timeout, clock)
        ctx = contextvars.copy_context()
        future = pool.submit(ctx.run, _run_with_deadline, deadline, fn, args, kwargs)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the callable itself raised TimeoutError
                return future.result()
            future.cancel()  # dequeued if it never started; abandoned if running
            raise PolicyTimeoutError(target, timeout) from None

    def _start(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._max_workers, thread_name_prefix="fusebox-timeout"
                )
            return self._pool

    def shutdown(self) -> None:
        """Stop accepting work; abandoned callables finish in the background."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _run_with_deadline(
    deadline: AttemptDeadline, fn: Callable[..., Any], args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    _attempt_deadline.set(deadline)  # inside the copied context: private to this attempt
    return fn(*args, **kwargs)


# -- breakers around one attempt -------------------------------------------------


# A breaker following the cluster in half-open raises ProbeLeaseRequired from
# acquire(): the call then asks for a probe lease (blocking for at most the lease
# deadline on the sync path: the only network wait a guarded call can make).


def _admit_sync(breaker: Breaker) -> int:
    try:
        return breaker.acquire()
    except ProbeLeaseRequired:
        return breaker.acquire_probe()


async def _admit_async(breaker: Breaker) -> int:
    try:
        return breaker.acquire()
    except ProbeLeaseRequired:
        return await breaker.acquire_probe_async()


def _acquire(breakers: tuple[Breaker, ...]) -> list[int]:
    if len(breakers) == 1:
        breaker = breakers[0]
        try:
            return [breaker.acquire()]
        except ProbeLeaseRequired:
            return [breaker.acquire_probe()]
    # Nested like Dapr's actor "both" scope: a rejection by an inner breaker is a
    # failure for the outer ones that already admitted the request.
    generations: list[int] = []
    for i, breaker in enumerate(breakers):
        try:
            generations.append(_admit_sync(breaker))
        except BreakerOpenError:
            for outer, generation in zip(breakers[:i], generations, strict=True):
                outer.release(generation, False)
            raise
    return generations


async def _acquire_async(breakers: tuple[Breaker, ...]) -> list[int]:
    generations: list[int] = []
    for i, breaker in enumerate(breakers):
        try:
            generations.append(await _admit_async(breaker))
        except BreakerOpenError:
            for outer, generation in zip(breakers[:i], generations, strict=True):
                outer.release(generation, False)
            raise
    return generations


def _rejected(plan: CallPlan) -> None:
    plan.stats.rejected()
    plan.stats.failure()


# -- sync -------------------------------------------------------------------------


def call_sync(plan: CallPlan, fn: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    """Run ``fn(*args, **kwargs)`` under ``plan``."""
    if plan.breaker_only:
        return one_breaker_sync(plan, fn, args, kwargs)
    if plan.touch:
        _touch(plan.breakers)
    start = plan.now()
    schedule: RetrySchedule | None = None  # created on the first failure: success stays cheap
    attempt = 0
    while True:
        attempt += 1
        result, error, outcome, permanent = _attempt_sync(plan, fn, args, kwargs)
        if outcome.success:
            plan.stats.success()
            if error is not None:
                raise error
            return result
        if schedule is None and plan.retry is not None:
            schedule = RetrySchedule(plan.retry)
        delay = _next_delay(plan, schedule, outcome, permanent, start)
        if delay is None:
            break
        _announce_retry(plan, attempt, delay, error, outcome)
        if _should_wait():
            plan.clock.sleep(delay)
    if _use_fallback(plan, outcome):
        value = _fallback_value(plan, error, result, outcome)
        if inspect.isawaitable(value):
            raise TypeError(f"fallback for {plan.target} is async; call it from an async path")
        return value
    return _give_up(error, result, attempt, plan)


def one_breaker_sync(plan: CallPlan, fn: Callable[..., Any], args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
    """The hot path: one breaker, no retry, no timeout, no fallback. Kept flat on purpose."""
    breaker: Breaker = plan.breaker  # type: ignore[assignment]  # set when breaker_only
    if plan.touch:
        breaker.last_used = touch_tick()
    try:
        generation = breaker.acquire()
    except ProbeLeaseRequired:
        try:
            generation = breaker.acquire_probe()
        except BreakerOpenError:
            _rejected(plan)
            raise
    except BreakerOpenError:
        _rejected(plan)
        raise
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        success = plan.classifier(None, exc).success
        breaker.release(generation, success)
        (plan.succeeded if success else plan.failed)()
        raise
    except BaseException:
        breaker.release(generation, False)
        raise
    classifier = plan.classifier
    success = classifier is default_classifier or classifier(result, None).success
    breaker.release(generation, success)
    (plan.succeeded if success else plan.failed)()
    return result


def _attempt_sync(
    plan: CallPlan, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
) -> tuple[Any, BaseException | None, Outcome, bool]:
    """One attempt: (result, error, outcome, permanent)."""
    try:
        generations = _acquire(plan.breakers)
    except BreakerOpenError as exc:
        plan.stats.rejected()
        return None, exc, FAILURE, True
    try:
        if plan.timeout > 0:
            result = plan.timeouts.run(fn, args, kwargs, plan.timeout, plan.target, plan.clock)
        else:
            result = fn(*args, **kwargs)
    except Exception as exc:
        if isinstance(exc, PolicyTimeoutError):
            plan.stats.timeout()
        outcome = plan.classifier(None, exc)
        _release(plan.breakers, generations, outcome.success)
        return None, exc, outcome, False
    except BaseException:
        _release(plan.breakers, generations, False)
        raise
    classifier = plan.classifier
    outcome = SUCCESS if classifier is default_classifier else classifier(result, None)
    _release(plan.breakers, generations, outcome.success)
    return result, None, outcome, False


# -- async ------------------------------------------------------------------------


async def call_async(plan: CallPlan, fn: Callable[..., Awaitable[Any]],
                     args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Await ``fn(*args, **kwargs)`` under ``plan``."""
    if plan.breaker_only:
        return await one_breaker_async(plan, fn, args, kwargs)
    if plan.touch:
        _touch(plan.breakers)
    start = plan.now()
    schedule: RetrySchedule | None = None
    attempt = 0
    while True:
        attempt += 1
        result, error, outcome, permanent = await _attempt_async(plan, fn, args, kwargs)
        if outcome.success:
            plan.stats.success()
            if error is not None:
                raise error
            return result
        if schedule is None and plan.retry is not None:
            schedule = RetrySchedule(plan.retry)
        delay = _next_delay(plan, schedule, outcome, permanent, start)
        if delay is None:
            break
        _announce_retry(plan, attempt, delay, error, outcome)
        if _should_wait():
            await plan.clock.asleep(delay)
    if _use_fallback(plan, outcome):
        value = _fallback_value(plan, error, result, outcome)
        if inspect.isawaitable(value):
            return await value
        return value
    return _give_up(error, result, attempt, plan)


async def one_breaker_async(plan: CallPlan, fn: Callable[..., Awaitable[Any]],
                            args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``one_breaker_sync`` for coroutines."""
    breaker: Breaker = plan.breaker  # type: ignore[assignment]  # set when breaker_only
    if plan.touch:
        breaker.last_used = touch_tick()
    try:
        generation = breaker.acquire()
    except ProbeLeaseRequired:
        try:
            generation = await breaker.acquire_probe_async()
        except BreakerOpenError:
            _rejected(plan)
            raise
    except BreakerOpenError:
        _rejected(plan)
        raise
    try:
        result = await fn(*args, **kwargs)
    except Exception as exc:
        success = plan.classifier(None, exc).success
        breaker.release(generation, success)
        (plan.succeeded if success else plan.failed)()
        raise
    except BaseException:
        breaker.release(generation, False)
        raise
    classifier = plan.classifier
    success = classifier is default_classifier or classifier(result, None).success
    breaker.release(generation, success)
    (plan.succeeded if success else plan.failed)()
    return result


async def _attempt_async(
    plan: CallPlan, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Any, BaseException | None, Outcome, bool]:
    try:
        generations = await _acquire_async(plan.breakers)
    except BreakerOpenError as exc:
        plan.stats.rejected()
        return None, exc, FAILURE, True
    try:
        if plan.timeout > 0:
            result = await _await_with_timeout(plan, fn, args, kwargs)
        else:
            result = await fn(*args, **kwargs)
    except Exception as exc:
        if isinstance(exc, PolicyTimeoutError):
            plan.stats.timeout()
        outcome = plan.classifier(None, exc)
        _release(plan.breakers, generations, outcome.success)
        return None, exc, outcome, False
    except BaseException:
        _release(plan.breakers, generations, False)
        raise
    classifier = plan.classifier
    outcome = SUCCESS if classifier is default_classifier else classifier(result, None)
    _release(plan.breakers, generations, outcome.success)
    return result, None, outcome, False


async def _await_with_timeout(plan: CallPlan, fn: Callable[..., Awaitable[Any]],
                              args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    deadline = AttemptDeadline(plan.clock.monotonic() + plan.timeout, plan.timeout, plan.clock)
    token = _attempt_deadline.set(deadline)
    scope = asyncio.timeout(plan.timeout)
    try:
        async with scope:
            return await fn(*args, **kwargs)
    except TimeoutError:
        if scope.expired():  # ours: the awaited call was cancelled at the deadline
            raise PolicyTimeoutError(plan.target, plan.timeout) from None
        raise
    finally:
        _attempt_deadline.reset(token)


# -- shared -------------------------------------------------------------------------


def _announce_retry(plan: CallPlan, attempt: int, delay: float, error: BaseException | None,
                    outcome: Outcome) -> None:
    plan.stats.retry()
    plan.hooks.emit_retry(
        RetryEvent(plan.target, plan.operation, attempt + 1, delay, error, outcome)
    )


def _use_fallback(plan: CallPlan, outcome: Outcome) -> bool:
    """Count the final failure; whether the fallback answers it."""
    plan.stats.failure()
    use = plan.fallback is not None and fallback_matches(plan.fallback, outcome)
    if use:
        plan.stats.fallback()
    return use


def _touch(breakers: tuple[Breaker, ...]) -> None:
    tick = touch_tick()
    for breaker in breakers:
        breaker.last_used = tick


def _release(breakers: tuple[Breaker, ...], generations: list[int], success: bool) -> None:
    if len(breakers) == 1:
        breakers[0].release(generations[0], success)
        return
    for breaker, generation in zip(breakers, generations, strict=True):
        breaker.release(generation, success)


def _should_wait() -> bool:
    config = _testing.config
    return not config.enabled or config.waits


def _next_delay(plan: CallPlan, schedule: RetrySchedule | None, outcome: Outcome,
                permanent: bool, start: float) -> float | None:
    if permanent or schedule is None or plan.retry is None:
        return None
    if not retry_matches(plan.retry, outcome):
        return None
    return schedule.next_delay(plan.now() - start, outcome.retry_after)


def _fallback_value(plan: CallPlan, error: BaseException | None, result: Any,
                    outcome: Outcome) -> Any:
    policy = plan.fallback
    assert policy is not None
    plan.hooks.emit_fallback(FallbackEvent(plan.target, policy.name, error, outcome))
    if plan.fallback_fn is not None:
        return plan.fallback_fn(CallFailure(plan.target, error, result, outcome))
    return policy.response


def _give_up(error: BaseException | None, result: Any, attempts: int, plan: CallPlan) -> Any:
    if error is None:
        return result  # a failing result (e.g. an HTTP 503 response) is returned as is
    if attempts > 1:
        error.add_note(f"fusebox: {plan.target} failed after {attempts} attempts")
    raise error
