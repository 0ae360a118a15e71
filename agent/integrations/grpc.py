"""gRPC integration: client interceptors (sync and ``grpc.aio``) that guard every RPC.

>>> import grpc
>>> from fusebox.agent.integrations.grpc import fusebox_aio_interceptors, fusebox_interceptors
>>> channel = grpc.intercept_channel(  # doctest: +SKIP
...     grpc.insecure_channel(address), *fusebox_interceptors(fb, app="order-processor"))
>>> channel = grpc.aio.insecure_channel(  # doctest: +SKIP
...     address, interceptors=fusebox_aio_interceptors(afb, app="order-processor"))

Target method: the full gRPC method name as gRPC spells it,
``/pkg.Service/Method`` (what Dapr's gRPC proxy uses), so breakers are per
method: ``order-processor:/pkg.Service/Method``. ``method=`` fixes another
name or derives one from the full method name.

What a policy covers:

* unary responses (unary-unary, stream-unary): the whole call. The attempt's
  remaining time becomes the call's ``timeout=`` (tightening the caller's), so
  gRPC itself stops a timed-out attempt with ``DEADLINE_EXCEEDED``.
* streamed responses (unary-stream, stream-stream): opening the call up to
  its *first response message* (or its clean end). The caller's ``timeout=``
  keeps bounding the whole stream; a policy timeout bounds the wait for the
  first message, and a call abandoned that way is cancelled. A failure after
  the first message is logged and raised to the iterating code but **not
  retried**: the application has already consumed messages, and a new call
  would replay them.
* request streams are recorded as they are sent, so a retry resends them.

Classification: a non-OK status is a failure carrying ``grpc_code`` (the
code's int value), so retry ``matching.gRPCStatusCodes`` applies. After the
last attempt, the RPC error is surfaced exactly where gRPC surfaces it
without the interceptor.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio

from fusebox.agent._agent import Agent, AsyncAgent, AsyncTarget, Target
from fusebox.agent.classify import FAILURE, Classifier, Outcome, grpc_outcome
from fusebox.agent.integrations import (
    _AsyncReplayableIterable,
    _attempt_timeout,
    _AttemptLedger,
    _choose,
    _ReplayableIterable,
)
from fusebox.agent.policy import FallbackResponse

__all__ = ["classify_rpc", "fusebox_aio_interceptors", "fusebox_interceptors"]

logger = logging.getLogger("fusebox.agent")

MethodName = str | Callable[[str], str]
#: Turns a static fallback body into a response message: ``(full method, body) -> message``.
FallbackDeserializer = Callable[[str, bytes], Any]

_OK = grpc.StatusCode.OK


def classify_rpc(result: Any, error: BaseException | None) -> Outcome:
    """Dapr's gRPC rule: a non-OK status is a failure with its code; other errors fail too.

    The interceptors raise the ``RpcError`` of a failed attempt, so a result
    here is a call that succeeded (or a stream that delivered its first message).
    """
    if error is None:
        return Outcome(True, grpc_code=0)
    code = getattr(error, "code", None)
    if isinstance(error, grpc.RpcError) and callable(code):
        status = code()
        if isinstance(status, grpc.StatusCode):
            return grpc_outcome(status.value[0])
    return FAILURE


class _Guard:
    """What every interceptor of one ``fusebox_interceptors`` call shares."""

    def __init__(self, fb: Agent | AsyncAgent, app: MethodName, method: MethodName | None,
                 classifier: Classifier | None,
                 fallback_deserializer: FallbackDeserializer | None) -> None:
        self.fb = fb
        self.app = app
        self.method = method
        self.classifier = classifier or classify_rpc
        self.fallback_deserializer = fallback_deserializer

    def target(self, full_method: str) -> Target | AsyncTarget:
        app = _choose(self.app, full_method)
        assert app is not None
        method = full_method if self.method is None else _choose(self.method, full_method)
        return self.fb.app(app, method=method or None, classifier=self.classifier)

    def fallback_messages(self, value: object, full_method: str) -> list[Any]:
        """A fallback's value as response messages (a list or iterator is a stream of them)."""
        if isinstance(value, FallbackResponse):
            if self.fallback_deserializer is None:
                raise TypeError(
                    f"a static fallback answered {full_method}, but gRPC needs a message: pass "
                    "fallback_deserializer=(method, body) -> message, or use a function fallback"
                )
            return [self.fallback_deserializer(full_method, value.body)]
        if isinstance(value, list | tuple | Iterator):
            return list(value)
        return [value]


def _method_name(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


# -- sync -------------------------------------------------------------------------------


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """Call details with the attempt's timeout."""


def _with_attempt_timeout(details: Any) -> _CallDetails:
    return _CallDetails(
        details.method, _attempt_timeout(details.timeout), details.metadata,
        details.credentials, getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


class _FallbackCall(grpc.Call, grpc.Future):  # type: ignore[misc]
    """A finished, successful call whose response(s) came from a fallback."""

    def __init__(self, messages: list[Any]) -> None:
        self._messages = messages
        self._iterator = iter(messages)

    def result(self, timeout: float | None = None) -> Any:
        return self._messages[0] if self._messages else None

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._iterator)

    def initial_metadata(self) -> None:
        return None

    def trailing_metadata(self) -> None:
        return None

    def code(self) -> grpc.StatusCode:
        return _OK

    def details(self) -> str:
        return ""

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def exception(self, timeout: float | None = None) -> None:
        return None

    def traceback(self, timeout: float | None = None) -> None:
        return None

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)


class _PrimedStream(grpc.Call, grpc.Future):  # type: ignore[misc]
    """A response stream whose first message was read to decide the attempt's outcome.

    Iterating yields that message, then the rest; everything else is the call's.
    """

    _NOTHING = object()

    def __init__(self, call: Any, target: str) -> None:
        self.call = call
        self._target = target
        try:
            self._first: Any = next(call)
        except StopIteration:
            self._first = self._NOTHING

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        first, self._first = self._first, self._NOTHING
        if first is not self._NOTHING:
            return first
        try:
            return next(self.call)
        except grpc.RpcError as exc:
            _log_mid_stream_failure(self._target, exc)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.call, name)

    # The abstract methods of grpc.Call and grpc.Future, delegated.
    def initial_metadata(self) -> Any:
        return self.call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self.call.trailing_metadata()

    def code(self) -> Any:
        return self.call.code()

    def details(self) -> Any:
        return self.call.details()

    def is_active(self) -> Any:
        return self.call.is_active()

    def time_remaining(self) -> Any:
        return self.call.time_remaining()

    def cancel(self) -> Any:
        return self.call.cancel()

    def add_callback(self, callback: Callable[[], None]) -> Any:
        return self.call.add_callback(callback)

    def cancelled(self) -> Any:
        return self.call.cancelled()

    def running(self) -> Any:
        return self.call.running()

    def done(self) -> Any:
        return self.call.done()

    def result(self, timeout: float | None = None) -> Any:
        return self.call.result(timeout)

    def exception(self, timeout: float | None = None) -> Any:
        return self.call.exception(timeout)

    def traceback(self, timeout: float | None = None) -> Any:
        return self.call.traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> Any:
        return self.call.add_done_callback(fn)


def _log_mid_stream_failure(target: str, error: BaseException) -> None:
    code = getattr(error, "code", None)
    status = code() if callable(code) else None
    logger.warning(
        "Stream to %s failed after its first message (%s); not retried",
        target, status, extra={"fusebox_event": "stream_failed", "target": target},
    )


def _surface(error: grpc.RpcError) -> Any:
    """Hand a final RPC error back where gRPC would: as the call object it raises from."""
    if isinstance(error, grpc.Call) and isinstance(error, grpc.Future):
        return error
    raise error


def _unary(guard: _Guard, start: Callable[[Any], Any], details: Any) -> Any:
    full_method = _method_name(details)
    target = guard.target(full_method)

    def attempt() -> Any:
        call = start(_with_attempt_timeout(details))
        # Waits for a `.future()` call too: the policies need its outcome.
        if call.code() is not _OK and isinstance(call, grpc.RpcError):
            raise call
        return call

    try:
        result = target._call(attempt)
    except grpc.RpcError as exc:
        return _surface(exc)
    if isinstance(result, grpc.Call):
        return result
    return _FallbackCall(guard.fallback_messages(result, full_method))


def _stream(guard: _Guard, start: Callable[[Any], Any], details: Any) -> Any:
    full_method = _method_name(details)
    target = guard.target(full_method)
    ledger: _AttemptLedger[Any] = _AttemptLedger()

    def attempt() -> _PrimedStream:
        number, stale = ledger.begin()
        if stale is not None:
            stale.cancel()  # retried or abandoned at its timeout: stop it
        call = start(details)  # the caller's timeout bounds the whole stream
        if not ledger.keep(number, call):
            call.cancel()
        return _PrimedStream(call, target.name)

    try:
        result: Any = target._call(attempt)  # or a fallback's value
    except grpc.RpcError as exc:
        _cancel(ledger.finish(exc))
        return _surface(exc)
    except BaseException:
        _cancel(ledger.finish(None))
        raise
    if isinstance(result, _PrimedStream):
        _cancel(ledger.finish(result.call))
        return result
    _cancel(ledger.finish(None))
    return _FallbackCall(guard.fallback_messages(result, full_method))


def _cancel(call: Any) -> None:
    if call is not None:
        call.cancel()


class _SyncInterceptor:
    def __init__(self, guard: _Guard) -> None:
        self._guard = guard


class _UnaryUnary(_SyncInterceptor, grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return _unary(self._guard, lambda d: continuation(d, request), details)


class _UnaryStream(_SyncInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return _stream(self._guard, lambda d: continuation(d, request), details)


class _StreamUnary(_SyncInterceptor, grpc.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        replay = _ReplayableIterable(requests)
        return _unary(self._guard, lambda d: continuation(d, iter(replay)), details)


class _StreamStream(_SyncInterceptor, grpc.StreamStreamClientInterceptor):  # type: ignore[misc]
    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        replay = _ReplayableIterable(requests)
        return _stream(self._guard, lambda d: continuation(d, iter(replay)), details)


def fusebox_interceptors(
    fb: Agent | AsyncAgent,
    *,
    app: MethodName,
    method: MethodName | None = None,
    classifier: Classifier | None = None,
    fallback_deserializer: FallbackDeserializer | None = None,
) -> tuple[Any, Any, Any, Any]:
    """The four sync client interceptors (unary-unary, unary-stream, stream-unary, stream-stream).

    ``app``: the target app-id, or a callable of the full method name;
    ``method``: overrides the target method (default: the full method name,
    ``/pkg.Service/Method``); ``classifier`` replaces ``classify_rpc``;
    ``fallback_deserializer(full_method, body)`` turns a static fallback body
    into a response message.

    >>> interceptors = fusebox_interceptors(fb, app="x")  # doctest: +SKIP
    >>> channel = grpc.intercept_channel(channel, *interceptors)  # doctest: +SKIP
    """
    guard = _Guard(fb, app, method, classifier, fallback_deserializer)
    return _UnaryUnary(guard), _UnaryStream(guard), _StreamUnary(guard), _StreamStream(guard)


# -- asyncio ----------------------------------------------------------------------------


def _aio_with_attempt_timeout(details: Any) -> grpc.aio.ClientCallDetails:
    return grpc.aio.ClientCallDetails(
        details.method, _attempt_timeout(details.timeout), details.metadata,
        details.credentials, details.wait_for_ready,
    )


async def _value(value: Any) -> Any:
    return value


class _AioFallbackCall:
    """A finished, successful unary-response call whose response came from a fallback."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def __await__(self) -> Any:
        return _value(self._message).__await__()

    async def code(self) -> grpc.StatusCode:
        return _OK

    async def details(self) -> str:
        return ""

    async def initial_metadata(self) -> None:
        return None

    async def trailing_metadata(self) -> None:
        return None

    async def debug_error_string(self) -> str:
        return ""

    async def wait_for_connection(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)

    def time_remaining(self) -> None:
        return None


async def _aio_unary(guard: _Guard, start: Callable[[Any], Awaitable[Any]], details: Any,
                     wrap_fallback: bool) -> Any:
    full_method = _method_name(details)
    target = guard.target(full_method)

    async def attempt() -> Any:
        call = await start(_aio_with_attempt_timeout(details))
        await call  # raises AioRpcError on a non-OK status; cancelled at the policy timeout
        return call

    result = await target._acall(attempt)
    if isinstance(result, grpc.aio.Call):
        return result
    message = guard.fallback_messages(result, full_method)[0]
    # grpc.aio wraps a bare message itself for unary-unary, but wants a call for stream-unary.
    return _AioFallbackCall(message) if wrap_fallback else message


async def _aio_rest_of_stream(call: Any, first: Any, target: str) -> AsyncIterator[Any]:
    if first is grpc.aio.EOF:
        return
    yield first
    while True:
        try:
            message = await call.read()
        except grpc.aio.AioRpcError as exc:
            _log_mid_stream_failure(target, exc)
            raise
        if message is grpc.aio.EOF:
            return
        yield message


async def _aio_messages(messages: list[Any]) -> AsyncIterator[Any]:
    for message in messages:
        yield message


async def _aio_stream(guard: _Guard, start: Callable[[Any], Awaitable[Any]],
                      details: Any) -> AsyncIterator[Any]:
    full_method = _method_name(details)
    target = guard.target(full_method)
    ledger: _AttemptLedger[Any] = _AttemptLedger()

    async def attempt() -> AsyncIterator[Any]:
        number, stale = ledger.begin()
        if stale is not None:
            stale.cancel()
        call = await start(details)  # the caller's timeout bounds the whole stream
        ledger.keep(number, call)
        first = await call.read()  # raises AioRpcError if the call fails before it
        return _aio_rest_of_stream(call, first, target.name)

    try:
        result: Any = await target._acall(attempt)  # or a fallback's value
    except BaseException:
        _cancel(ledger.finish(None))
        raise
    if isinstance(result, AsyncIterator):
        ledger.finish(None)  # the last call is the one now streaming: keep it
        return result
    _cancel(ledger.finish(None))
    return _aio_messages(guard.fallback_messages(result, full_method))


def _replayable(requests: Any) -> Any:
    if hasattr(requests, "__aiter__"):
        return _AsyncReplayableIterable(requests)
    return _ReplayableIterable(requests)


class _AioUnaryUnary(_SyncInterceptor, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await _aio_unary(self._guard, lambda d: continuation(d, request), details, False)


class _AioUnaryStream(_SyncInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await _aio_stream(self._guard, lambda d: continuation(d, request), details)


class _AioStreamUnary(_SyncInterceptor, grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        replay = _replayable(requests)
        return await _aio_unary(self._guard, lambda d: continuation(d, replay), details, True)


class _AioStreamStream(_SyncInterceptor, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Any, details: Any,
                                      requests: Any) -> Any:
        replay = _replayable(requests)
        return await _aio_stream(self._guard, lambda d: continuation(d, replay), details)


def fusebox_aio_interceptors(
    fb: Agent | AsyncAgent,
    *,
    app: MethodName,
    method: MethodName | None = None,
    classifier: Classifier | None = None,
    fallback_deserializer: FallbackDeserializer | None = None,
) -> list[Any]:
    """The four ``grpc.aio`` client interceptors; same arguments as ``fusebox_interceptors``.

    >>> channel = grpc.aio.insecure_channel(  # doctest: +SKIP
    ...     address, interceptors=fusebox_aio_interceptors(fb, app="x"))
    """
    guard = _Guard(fb, app, method, classifier, fallback_deserializer)
    return [_AioUnaryUnary(guard), _AioUnaryStream(guard), _AioStreamUnary(guard),
            _AioStreamStream(guard)]
