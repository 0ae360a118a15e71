"""Client integrations: guard the calls an HTTP or gRPC client makes.

Each integration plugs into its client's own extension point and sends every
request through a Fusebox target (``fb.app(app_id, method=...)``), so the
target's timeout, retry, circuit breaker and fallback policies apply::

    from fusebox.agent.integrations.requests import FuseboxAdapter, FuseboxSession
    from fusebox.agent.integrations.httpx import AsyncFuseboxTransport, FuseboxTransport
    from fusebox.agent.integrations.grpc import fusebox_aio_interceptors, fusebox_interceptors

``requests`` and ``httpx`` are optional (``pip install 'fusebox-resilience[integrations]'``);
importing ``agent`` or this package never imports them. See
``docs/integrations.md``. None makes spans: beside OpenTelemetry's client
instrumentations, each attempt gets the instrumentation's one client span where
it runs inside the retry loop (``docs/observability.md`` has the wiring).

This module holds the pieces the integrations share; none of it is public.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from fusebox.agent._agent import AsyncTarget, Target
from fusebox.agent._executor import current_attempt_deadline

__all__: list[str] = []

T = TypeVar("T")

# A deadline already passed still gets a tiny positive timeout: clients read 0 as
# "no timeout" or refuse it, and the attempt must fail fast rather than hang.
_MIN_TIMEOUT = 0.001


def _attempt_timeout(timeout: float | None) -> float | None:
    """The tighter of a caller's own timeout and the running attempt's remaining time."""
    deadline = current_attempt_deadline()
    if deadline is None:
        return timeout
    remaining = max(deadline.remaining(), _MIN_TIMEOUT)
    return remaining if timeout is None else min(timeout, remaining)


def _choose(choice: str | Callable[[T], str] | None, subject: T) -> str | None:
    """A fixed name, or one derived from the request (or gRPC method) by a callable."""
    if choice is None or isinstance(choice, str):
        return choice
    return choice(subject)


class _AttemptLedger(Generic[T]):
    """The attempts of one guarded call, so discarded results get released.

    The agent drops the result of a failed attempt it retries (an HTTP 503
    response, a gRPC stream): ``begin()`` hands the previous attempt's result
    back for closing. A sync attempt abandoned at its timeout may finish later
    in its worker thread: ``keep()`` says it is stale so the caller closes it.
    ``finish(final)`` returns what is left to close once the call is over.
    """

    __slots__ = ("_done", "_last", "_latest", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest = 0
        self._last: T | None = None
        self._done = False

    def begin(self) -> tuple[int, T | None]:
        """Start an attempt: its number, and the previous result to release (if any)."""
        with self._lock:
            self._latest += 1
            stale, self._last = self._last, None
            return self._latest, stale

    def keep(self, attempt: int, value: T) -> bool:
        """Record an attempt's result; False if the call already moved on (release it)."""
        with self._lock:
            if attempt != self._latest or self._done:
                return False
            self._last = value
            return True

    def finish(self, final: object) -> T | None:
        """The call returned ``final`` (or raised: ``None``): what to release now."""
        with self._lock:
            self._done = True
            last, self._last = self._last, None
        return None if last is final else last


class _Closeable(Protocol):
    def close(self) -> object: ...


class _AsyncCloseable(Protocol):
    async def aclose(self) -> object: ...


C = TypeVar("C", bound=_Closeable)
AC = TypeVar("AC", bound=_AsyncCloseable)


def _call_releasing(
    target: Target | AsyncTarget, attempt: Callable[[], C], ledger: _AttemptLedger[C]
) -> Any:
    """Run ``attempt`` through ``target`` (blocking), closing every result but the final one.

    The final value is what the agent returns: the last response, or a
    fallback's value.
    """
    result = None
    try:
        result = target._call(attempt)
        return result
    finally:
        leftover = ledger.finish(result)  # raised: result is None, nothing is final
        if leftover is not None:
            leftover.close()


async def _acall_releasing(
    target: Target | AsyncTarget, attempt: Callable[[], Awaitable[AC]],
    ledger: _AttemptLedger[AC],
) -> Any:
    """``_call_releasing`` for coroutine attempts: awaited, and their results ``aclose``d."""
    result = None
    try:
        result = await target._acall(attempt)
        return result
    finally:
        leftover = ledger.finish(result)
        if leftover is not None:
            await leftover.aclose()


_END: Any = object()  # what the source gave once exhausted
_PULL: Any = object()  # what a replay gets once it has caught up with the recording


class _Recording(Generic[T]):
    """The items of a one-shot source read so far, replayed by every iteration.

    The first iteration streams the source through and records each item; a
    retry replays the recording, then goes on pulling from the source. The cost
    is memory: the items read so far are kept until the call ends. The sync and
    async iterables below only pull (``next`` or ``await anext``).
    """

    def __init__(self) -> None:
        self._recorded: list[T] = []
        self._exhausted = False

    def _at(self, index: int) -> Any:
        """The item a replay gets at ``index``: recorded, ``_END``, or ``_PULL`` one."""
        if index < len(self._recorded):
            return self._recorded[index]
        return _END if self._exhausted else _PULL

    def _pulled(self, item: Any) -> Any:
        """Record what the source gave (an item, or ``_END``); hand it on."""
        if item is _END:
            self._exhausted = True
        else:
            self._recorded.append(item)
        return item


class _ReplayableIterable(_Recording[T]):
    """A one-shot iterable that every iteration replays from the start (``_Recording``).

    Thread-safe, because an abandoned sync attempt may still be reading in its worker.
    """

    def __init__(self, source: Iterable[T]) -> None:
        super().__init__()
        self._source = iter(source)
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[T]:
        index = 0
        while True:
            with self._lock:
                item = self._at(index)
                if item is _PULL:
                    item = self._pulled(next(self._source, _END))
            if item is _END:
                return
            index += 1
            yield item


class _AsyncReplayableIterable(_Recording[T]):
    """``_ReplayableIterable`` for an async source (attempts run on one event loop)."""

    def __init__(self, source: AsyncIterable[T]) -> None:
        super().__init__()
        self._source = aiter(source)

    async def _replay(self) -> AsyncIterator[T]:
        index = 0
        while True:
            item = self._at(index)
            if item is _PULL:
                item = self._pulled(await anext(self._source, _END))
            if item is _END:
                return
            index += 1
            yield item

    def __aiter__(self) -> AsyncIterator[T]:
        return self._replay()
