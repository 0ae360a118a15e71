"""Running one guarded call: ``fallback(retry(breaker(timeout(operation))))``, as Dapr.

``CallPlan`` is everything a call needs, resolved once per (handle, policy
snapshot). A call keeps the plan it started with, so a policy swap never
changes a call in flight.

Final failures: a failing *result* (e.g. an HTTP 503 response) is returned as
is; a failing *exception* is re-raised unchanged, with a note recording the
number of attempts. ``BreakerOpenError`` is permanent: it stops the retries.

Sync and async, written once
----------------------------
Every decision of a call is made here once, in code that knows nothing of
threads or event loops: how an attempt ended, what it releases and counts
(``settle``), whether and when to retry and
whether the fallback answers (``RetryContext``, the call's retry context, as
stamina has one). ``call_sync`` and ``call_async`` are the drivers: they only
acquire the breaker, call or await the operation under its timeout, ask for a
probe lease (blocking or awaiting) and sleep (``clock.sleep`` or ``clock.asleep``). A retry or
fallback fix is made once.

Why not generate the sync code from the async code, as httpcore does with
unasync? The two paths differ in more than ``await``: a sync attempt times out
in a worker thread that cannot be interrupted (``TimeoutPool``) while an async
one is cancelled, and a sync call refuses a coroutine fallback that an async
one awaits. A token rewrite would need hand-kept exceptions for those, a
generator script and a freshness check, and would leave a second copy of the
module for every reader and tool to skip.

Why is ``RetryContext`` created by the first failure, not at the start of the
call? On CPython 3.11, creating an object costs about as much as the rest of a
guarded call's overhead on the success path (measured: +20% on retry +
breaker); a call whose first attempt succeeds keeps its state in the driver's
locals (the start time, the breaker's token) and allocates nothing. A sans-io
generator driven by both drivers would share even the loop, for the same
allocation and a resume per step.

Fleet budgets
-------------
A target's rate limit and retry budget (docs/budgets.md) sit around the
retry loop: the rate limit is asked before the first attempt (refused:
``rate_limited`` ends the call as a breaker's rejection does, fallback
included; ``wait``: the driver sleeps the reserved wait with its own sleep),
the first attempt is counted in the retry budget once the breaker admitted
it, and ``RetryContext`` asks the retry budget, then the rate limit (when it
counts retries), before announcing a retry; either refusing skips the retry.
A plan without budgets pays one attribute test per call for each.

The general path
----------------
Every plan that is not flat (below) runs ``call_sync`` / ``call_async``. Two
things they do inline rather than call, because a Python frame is a
measurable share of a guarded call (``make bench``, BENCHMARKS.md): the
breaker's LRU mark and the clock read at the start, and a first attempt's
success under the default classifier (release the breaker's token, count the
success, return), which is what ``settle`` would do for it. Every other
outcome goes to ``settle``.

The flat path
-------------
A call with one breaker and nothing else (``CallPlan.breaker_only``: the
common case, and the benchmarked one) skips all of the above. The handles'
entries (``_Handle._call_sync`` / ``_acall`` in ``fusebox.agent._agent``) run
it inline: touch and acquire the breaker, call or await the operation, settle.
A probe lease goes to ``lease_flat_sync`` / ``lease_flat_async``, a rejection
to ``rejected_flat``, an exception to ``raised_flat`` and a result to
``settle_flat``: what counts as success, what is counted and what is released
is written there, once for both flavours. One exception, on purpose: the sync
entry inlines ``settle_flat``'s four lines, because one more Python frame
costs about 5% of a flat call (the async entry saves more than that by
awaiting no inner coroutine). ``tests/agent/test_sync_async_twins.py`` holds
the two to the same behaviour.
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
from typing import Any, NoReturn, Protocol

import fusebox.agent.testing as _testing
from fusebox.agent._backoff import RetrySchedule
from fusebox.agent._cluster_port import ProbeLeaseRequired
from fusebox.agent._errors import BreakerOpenError, PolicyTimeoutError, RateLimitedError
from fusebox.agent._live_breaker import Breaker
from fusebox.agent._rate_limiter import RateLimiter
from fusebox.agent._registry import touch_tick
from fusebox.agent._retry_budget import RetryBudget
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


class CallTracing(Protocol):
    """What ``fusebox.agent.telemetry`` adds to a call's trace (see ``tracing``)."""

    def recording_span(self) -> Any:
        """The recording span of the running context, or None."""

    def attempt(self, retrying: RetryContext, number: int, success: bool,
                delay: float | None) -> None:
        """Attempt ``number`` of a call that failed at least once has ended."""

    def fallback(self, retrying: RetryContext) -> None:
        """The fallback answered the call."""

    def rejected_flat(self, plan: CallPlan) -> None:
        """The breaker rejected a flat call."""


#: Set by ``fusebox.agent.telemetry`` when it is imported (the OpenTelemetry API is
#: installed); None otherwise. Read only once a call has failed: a call whose first
#: attempt succeeds never looks at it (docs/observability.md, "Traces").
tracing: CallTracing | None = None


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


def _deadline_from_now(timeout: float, clock: Clock) -> AttemptDeadline:
    return AttemptDeadline(clock.monotonic() + timeout, timeout, clock)


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
    # At most one, as in daprd: a PolicyDefinition has one breaker (an actor's
    # `circuitBreakerScope: both` too: it picks the type-id breaker, as `id` does).
    breaker: Breaker | None
    fallback: FallbackPolicy | None
    fallback_fn: Callable[..., Any] | None
    classifier: Classifier
    stats: StatsCounter
    hooks: EventHooks
    clock: Clock
    timeouts: TimeoutPool
    touch: bool  # the breaker lives in an LRU: mark it used on every call
    rate_limit: RateLimiter | None = None  # the target's share of its rate limit
    retry_budget: RetryBudget | None = None  # the target's share of its retry budget
    breaker_only: bool = False  # one breaker and nothing else: the flat hot path
    now: Callable[[], float] = time.monotonic  # clock.monotonic, unwrapped for the system clock
    # Derived, for the hot path: one attribute load each instead of two.
    succeeded: Callable[[], object] = int  # stats.success
    failed: Callable[[], object] = int  # stats.failure

    def __post_init__(self) -> None:
        derived = object.__setattr__
        if self.clock is not SYSTEM_CLOCK:
            derived(self, "now", self.clock.monotonic)
        derived(self, "breaker_only", (
            self.breaker is not None and self.retry is None and self.fallback is None
            and self.timeout <= 0 and self.rate_limit is None and self.retry_budget is None
        ))
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
        deadline = _deadline_from_now(timeout, clock)
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


# -- one attempt ------------------------------------------------------------------------


class Raised:
    """What an attempt's driver hands to ``settle`` when the attempt raised ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def settle(plan: CallPlan, token: int | None, result: Any, retrying: RetryContext | None,
           start: float) -> RetryContext | None:
    """End an attempt: classify it, release its breaker, count it.

    ``token`` is the breaker's admission (None: the plan has no breaker, or the
    attempt was refused or interrupted before it was admitted); ``result`` is
    what the operation returned, or ``Raised``. Returns None when
    the call succeeded (its result is the call's); otherwise the call's
    ``RetryContext`` (created by its first failed attempt, then kept) holding
    this failure. Re-raises at once what no retry or fallback may handle: an
    exception the classifier calls a success, a ``BaseException`` that is not
    an ``Exception`` (an interrupt, a cancellation), an error while admitting.
    """
    permanent = False
    breaker = plan.breaker
    if type(result) is Raised:
        error = result.error
        result = None
        if token is None and breaker is not None:  # refused or interrupted while admitting
            if not isinstance(error, BreakerOpenError):
                raise error
            plan.stats.rejected()
            outcome, permanent = FAILURE, True
        elif not isinstance(error, Exception):  # not an outcome of the operation
            if token is not None:
                breaker.release(token, False)  # type: ignore[union-attr]  # token: has one
            raise error
        else:
            if isinstance(error, PolicyTimeoutError):
                plan.stats.timeout()
            outcome = plan.classifier(None, error)
            if token is not None:
                breaker.release(token, outcome.success)  # type: ignore[union-attr]
            if outcome.success:
                plan.succeeded()
                if retrying is not None:
                    retrying.succeeded()
                raise error
    else:
        error = None
        classifier = plan.classifier
        outcome = SUCCESS if classifier is default_classifier else classifier(result, None)
        if token is not None:
            breaker.release(token, outcome.success)  # type: ignore[union-attr]  # token: has one
        if outcome.success:
            plan.succeeded()
            if retrying is not None:  # the one check a first attempt's success pays
                retrying.succeeded()
            return None
    if retrying is None:
        retrying = RetryContext(plan, start)
    retrying.failed(result, error, outcome, permanent)
    return retrying


def rate_limited(plan: CallPlan, limiter: RateLimiter, start: float) -> RetryContext:
    """The rate limit refused the first attempt: the call ends as a rejected one.

    Counted, and handed to ``RetryContext`` as a permanent failure, so its
    fallback applies as to a breaker's rejection.
    """
    plan.stats.rate_limited()
    error = RateLimitedError(plan.target, limiter.policy.name, limiter.next_free(start))
    retrying = RetryContext(plan, start)
    retrying.failed(None, error, FAILURE, True)
    return retrying


# -- after a failed attempt ---------------------------------------------------------------


class RetryContext:
    """A guarded call from its first failed attempt on: retry (when), or give up (how).

    Created by ``settle`` on the first failure (a call whose first attempt
    succeeds allocates none), it holds the retry schedule and the last
    failure: ``next_delay`` says how long until the next attempt (announced to
    the hooks and the logs) or None; ``give_up`` / ``give_up_async`` end the
    call with the fallback's answer, the failing result, or the error.
    """

    __slots__ = ("attempts", "error", "fell_back", "outcome", "permanent", "plan", "result",
                 "schedule", "span", "start")

    def __init__(self, plan: CallPlan, start: float) -> None:
        self.plan = plan
        self.start = start
        self.attempts = 1
        self.schedule: RetrySchedule | None = None
        self.fell_back = False
        self.result: Any
        self.error: BaseException | None
        self.outcome: Outcome
        self.permanent: bool
        #: The caller's recording span (OpenTelemetry), which gets an event per attempt.
        self.span: Any = None if tracing is None else tracing.recording_span()

    def failed(self, result: Any, error: BaseException | None, outcome: Outcome,
               permanent: bool) -> None:
        """Record the last attempt's failure (``permanent``: never retried)."""
        self.result, self.error, self.outcome, self.permanent = result, error, outcome, permanent

    def succeeded(self) -> None:
        """The last attempt succeeded (after a failed one)."""
        if self.span is not None:
            tracing.attempt(self, self.attempts, True, None)  # type: ignore[union-attr]

    def next_delay(self) -> float | None:
        """Seconds until the next attempt, announced; None: no more attempts."""
        number = self.attempts
        delay = self._next_delay()
        if self.span is not None:
            tracing.attempt(self, number, False, delay)  # type: ignore[union-attr]
        return delay

    def _next_delay(self) -> float | None:
        plan, outcome = self.plan, self.outcome
        retry = plan.retry
        if self.permanent or retry is None or not retry_matches(retry, outcome):
            return None
        schedule = self.schedule
        if schedule is None:
            schedule = self.schedule = RetrySchedule(retry)
        now = plan.now()
        delay = schedule.next_delay(now - self.start, outcome.retry_after)
        if delay is None:
            return None
        if plan.retry_budget is not None or plan.rate_limit is not None:
            delay = self._budgeted(now, delay)
            if delay is None:
                return None
        self.attempts += 1
        plan.stats.retry()
        plan.hooks.emit_retry(
            RetryEvent(plan.target, plan.operation, self.attempts, delay, self.error, outcome)
        )
        return delay

    def _budgeted(self, now: float, delay: float) -> float | None:
        """The retry's delay once the budgets allowed it (None: skipped).

        The retry budget first: a rate-limit token is booked only for a retry
        the budget allows, and the budget's count is given back when the
        rate limit then refuses the retry.
        """
        plan = self.plan
        budget = plan.retry_budget
        if budget is not None and not budget.allow_retry(now):
            plan.stats.retry_skipped()
            return None
        limiter = plan.rate_limit
        if limiter is not None and limiter.policy.count_retries:
            wait = limiter.reserve(now + delay)  # the token for when the retry will run
            if wait is None:
                plan.stats.rate_limited()
                if budget is not None:
                    budget.refund()
                return None
            delay += wait
        return delay

    def give_up(self) -> Any:
        """End the call on the sync path, where a coroutine fallback is an error."""
        value = self._final()
        if self.fell_back and inspect.isawaitable(value):
            raise TypeError(f"fallback for {self.plan.target} is async; "
                            "call it from an async path")
        return value

    async def give_up_async(self) -> Any:
        """End the call on the async path, awaiting a coroutine fallback."""
        value = self._final()
        if self.fell_back and inspect.isawaitable(value):
            return await value
        return value

    def _final(self) -> Any:
        plan, outcome, error = self.plan, self.outcome, self.error
        plan.failed()
        policy = plan.fallback
        if policy is not None and fallback_matches(policy, outcome):
            plan.stats.fallback()
            self.fell_back = True
            if self.span is not None:
                tracing.fallback(self)  # type: ignore[union-attr]
            plan.hooks.emit_fallback(FallbackEvent(plan.target, policy.name, error, outcome))
            if plan.fallback_fn is not None:
                return plan.fallback_fn(CallFailure(plan.target, error, self.result, outcome))
            return policy.response
        if error is None:
            return self.result  # a failing result (e.g. an HTTP 503 response) is returned as is
        if self.attempts > 1:
            error.add_note(f"fusebox: {plan.target} failed after {self.attempts} attempts")
        raise error


# -- the drivers ---------------------------------------------------------------------------


def _should_wait() -> bool:
    config = _testing.config
    return not config.enabled or config.waits


def call_sync(plan: CallPlan, fn: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any]) -> Any:
    """Run ``fn(*args, **kwargs)`` under ``plan`` in this thread.

    A probe lease, an attempt's timeout, a rate limit's wait and a retry's
    wait block the thread.
    """
    breaker = plan.breaker
    if plan.touch:  # an LRU's breaker: mark it used (see "The general path")
        breaker.last_used = touch_tick()  # type: ignore[union-attr]  # touch: has one
    start, retrying = plan.now(), None
    if (limiter := plan.rate_limit) is not None:
        if (wait := limiter.reserve(start)) is None:
            return rate_limited(plan, limiter, start).give_up()
        if wait and _should_wait():
            plan.clock.sleep(wait)  # at most maxWait: the slot is booked meanwhile
    budget = plan.retry_budget
    while True:
        token: int | None = None
        try:
            if breaker is not None:
                try:
                    token = breaker.acquire()
                except ProbeLeaseRequired:
                    # Blocks at most the lease deadline: the only network wait a call makes.
                    token = breaker.acquire_probe()
            if budget is not None and retrying is None:
                # budget.first_attempt(start), inlined: a frame less on the hot path.
                if start >= budget.slot_end:
                    budget.roll(start)
                budget.count_first()
            if plan.timeout > 0:
                result = plan.timeouts.run(fn, args, kwargs, plan.timeout, plan.target,
                                           plan.clock)
            else:
                result = fn(*args, **kwargs)
        except BaseException as error:
            result = Raised(error)
        else:
            if retrying is None and plan.classifier is default_classifier:
                # settle's first-attempt success, inlined (see "The general path").
                if token is not None:
                    breaker.release(token, True)  # type: ignore[union-attr]  # token: has one
                plan.succeeded()
                return result
        if (retrying := settle(plan, token, result, retrying, start)) is None:
            return result
        if (delay := retrying.next_delay()) is None:
            return retrying.give_up()
        if _should_wait():
            plan.clock.sleep(delay)


async def call_async(plan: CallPlan, fn: Callable[..., Awaitable[Any]],
                     args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Await ``fn(*args, **kwargs)`` under ``plan``."""
    breaker = plan.breaker
    if plan.touch:  # an LRU's breaker: mark it used (see "The general path")
        breaker.last_used = touch_tick()  # type: ignore[union-attr]  # touch: has one
    start, retrying = plan.now(), None
    if (limiter := plan.rate_limit) is not None:
        if (wait := limiter.reserve(start)) is None:
            return await rate_limited(plan, limiter, start).give_up_async()
        if wait and _should_wait():
            await plan.clock.asleep(wait)
    budget = plan.retry_budget
    while True:
        token: int | None = None
        try:
            if breaker is not None:
                try:
                    token = breaker.acquire()
                except ProbeLeaseRequired:
                    token = await breaker.acquire_probe_async()
            if budget is not None and retrying is None:
                # budget.first_attempt(start), inlined: a frame less on the hot path.
                if start >= budget.slot_end:
                    budget.roll(start)
                budget.count_first()
            if plan.timeout > 0:
                result = await _await_with_timeout(plan, fn, args, kwargs)
            else:
                result = await fn(*args, **kwargs)
        except BaseException as error:
            result = Raised(error)
        else:
            if retrying is None and plan.classifier is default_classifier:
                # settle's first-attempt success, inlined (see "The general path").
                if token is not None:
                    breaker.release(token, True)  # type: ignore[union-attr]  # token: has one
                plan.succeeded()
                return result
        if (retrying := settle(plan, token, result, retrying, start)) is None:
            return result
        if (delay := retrying.next_delay()) is None:
            return await retrying.give_up_async()
        if _should_wait():
            await plan.clock.asleep(delay)


async def _await_with_timeout(plan: CallPlan, fn: Callable[..., Awaitable[Any]],
                              args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    token = _attempt_deadline.set(_deadline_from_now(plan.timeout, plan.clock))
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


# -- the flat path: one breaker, no retry, no timeout, no fallback ------------------------
#
# The handles' entries run it inline for speed (see "The flat path" above): they
# touch the breaker and acquire it, then hand everything else to these functions.


def rejected_flat(plan: CallPlan) -> None:
    """The breaker rejected a flat call: a rejection and a failure."""
    plan.stats.rejected()
    plan.failed()
    if tracing is not None:
        tracing.rejected_flat(plan)


def lease_flat_sync(plan: CallPlan) -> int:
    """Admit a flat call as a fleet half-open probe, blocking for the lease."""
    try:
        return plan.breaker.acquire_probe()  # type: ignore[union-attr]  # set when breaker_only
    except BreakerOpenError:
        rejected_flat(plan)
        raise


async def lease_flat_async(plan: CallPlan) -> int:
    """``lease_flat_sync`` with the lease awaited."""
    try:
        return await plan.breaker.acquire_probe_async()  # type: ignore[union-attr]
    except BreakerOpenError:
        rejected_flat(plan)
        raise


def raised_flat(plan: CallPlan, token: int, error: BaseException) -> NoReturn:
    """A flat call's operation raised ``error``: release, count, re-raise."""
    breaker: Breaker = plan.breaker  # type: ignore[assignment]  # set when breaker_only
    if isinstance(error, Exception):
        success = plan.classifier(None, error).success
        breaker.release(token, success)
        (plan.succeeded if success else plan.failed)()
    else:  # KeyboardInterrupt, a cancellation: not an outcome to count
        breaker.release(token, False)
    raise error


def settle_flat(plan: CallPlan, token: int, result: Any) -> Any:
    """A flat call's operation returned ``result``: release, count, return it."""
    classifier = plan.classifier
    success = classifier is default_classifier or classifier(result, None).success
    plan.breaker.release(token, success)  # type: ignore[union-attr]  # set when breaker_only
    (plan.succeeded if success else plan.failed)()
    return result
