"""``httpx`` integration: transports that guard every request of a Client.

>>> import httpx
>>> from fusebox.agent.integrations.httpx import AsyncFuseboxTransport, FuseboxTransport
>>> client = httpx.Client(transport=FuseboxTransport(fb, app="order-processor"))  # doctest: +SKIP
>>> client = httpx.AsyncClient(  # doctest: +SKIP
...     transport=AsyncFuseboxTransport(afb, app="order-processor"))

Same semantics as the ``requests`` adapter: target method = URL path without
its leading slash unless ``method=`` says otherwise; Dapr's status rule;
failed responses closed before a retry; a static fallback becomes a real
``httpx.Response``.

Requires ``httpx`` (``pip install 'fusebox-resilience[integrations]'``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

from fusebox.agent._agent import Agent, AsyncAgent, AsyncTarget, Target
from fusebox.agent.classify import FAILURE, Classifier, Outcome, http_outcome, parse_retry_after
from fusebox.agent.extras import missing_extra
from fusebox.agent.integrations import (
    _acall_releasing,
    _AsyncReplayableIterable,
    _attempt_timeout,
    _AttemptLedger,
    _call_releasing,
    _choose,
    _ReplayableIterable,
)
from fusebox.agent.policy import FallbackResponse

try:
    import httpx
except ModuleNotFoundError as missing:  # the optional dependency, with the extra to install
    raise missing_extra("httpx", "integrations", __name__) from missing

__all__ = [
    "AsyncFuseboxTransport",
    "FuseboxTransport",
    "classify_response",
    "response_from_fallback",
    "url_path_method",
]

RequestName = str | Callable[[httpx.Request], str]

_RETRY_AFTER_STATUSES = frozenset({429, 503})
_TIMEOUT_KEYS = ("connect", "read", "write", "pool")


def classify_response(result: Any, error: BaseException | None) -> Outcome:
    """Dapr's rule for an ``httpx.Response``: status < 200 or > 399 is a failure.

    ``Retry-After`` is read on 429 and 503; exceptions are failures without a status.
    """
    if error is not None:
        return FAILURE
    if not isinstance(result, httpx.Response):
        return Outcome(True)
    retry_after = None
    if result.status_code in _RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(result.headers.get("Retry-After"))
    return http_outcome(result.status_code, retry_after)


def url_path_method(request: httpx.Request) -> str:
    """Dapr's method name for an HTTP call: the URL path without its leading slash."""
    return request.url.path.lstrip("/")


def response_from_fallback(fallback: FallbackResponse, request: httpx.Request) -> httpx.Response:
    """Turn a static fallback into a real ``httpx.Response`` with its status, headers, body."""
    return httpx.Response(
        fallback.status, headers=list(fallback.headers), content=fallback.body, request=request,
    )


W = TypeVar("W", httpx.BaseTransport, httpx.AsyncBaseTransport)


class _Base(Generic[W]):
    """What both transports share: the target of a request, its replayable body, ``wrapped``."""

    _default_transport: Callable[[], W]
    _replay_stream: Callable[[Any], httpx.SyncByteStream | httpx.AsyncByteStream]

    def __init__(
        self,
        fb: Agent | AsyncAgent,
        *,
        app: RequestName,
        method: RequestName | None = None,
        classifier: Classifier | None = None,
        wrapped: W | None = None,
    ) -> None:
        self.fb = fb
        self.app = app
        self.method: RequestName = url_path_method if method is None else method
        self.classifier = classifier or classify_response
        self.wrapped: W = wrapped if wrapped is not None else self._default_transport()

    def _prepare(self, request: httpx.Request) -> Target | AsyncTarget:
        """The target ``request`` goes to; its body made replayable for retries."""
        app = _choose(self.app, request)
        assert app is not None
        method = _choose(self.method, request) or None
        target = self.fb.app(app, method=method, classifier=self.classifier)
        if not isinstance(request.stream, httpx.ByteStream):  # ByteStream replays by itself
            request.stream = self._replay_stream(request.stream)
        return target


def _with_attempt_timeout(request: httpx.Request) -> httpx.Request:
    """Tighten the request's timeouts to the attempt's remaining time, so httpx enforces it."""
    timeouts = request.extensions.get("timeout") or {}
    tightened = {key: _attempt_timeout(timeouts.get(key)) for key in _TIMEOUT_KEYS}
    request.extensions = {**request.extensions, "timeout": tightened}
    return request


def _as_response(result: object, request: httpx.Request) -> httpx.Response:
    if isinstance(result, httpx.Response):
        return result
    if isinstance(result, FallbackResponse):
        return response_from_fallback(result, request)
    raise TypeError(
        f"a fallback for {request.method} {request.url} returned {type(result).__name__};"
        " the httpx integration needs an httpx.Response or a FallbackResponse"
    )


class _ReplayStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self._chunks = _ReplayableIterable(stream)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)


class _AsyncReplayStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._chunks = _AsyncReplayableIterable(stream)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return aiter(self._chunks)


class FuseboxTransport(_Base[httpx.BaseTransport], httpx.BaseTransport):
    """A sync transport that sends each request under a Fusebox target's policies.

    ``fb`` is an ``Agent`` (an ``AsyncAgent`` works too: the request blocks the
    caller). ``app`` / ``method``: fixed, or callables of the ``httpx.Request``
    (default method: the URL path without its leading slash). ``wrapped`` is
    the transport that really sends (default ``httpx.HTTPTransport()``);
    ``classifier`` replaces ``classify_response``.

    Each attempt's remaining time tightens the request's ``timeout`` extension
    (connect, read, write, pool), so httpx itself stops a timed-out attempt.
    A streaming request body is recorded as it is sent so a retry can replay it.
    """

    _default_transport = httpx.HTTPTransport
    _replay_stream = _ReplayStream

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` as one guarded call."""
        target = self._prepare(request)
        ledger: _AttemptLedger[httpx.Response] = _AttemptLedger()

        def attempt() -> httpx.Response:
            number, stale = ledger.begin()
            if stale is not None:
                stale.close()  # the agent retries: release the failed response
            response = self.wrapped.handle_request(_with_attempt_timeout(request))
            if not ledger.keep(number, response):
                response.close()  # an abandoned attempt finished after its caller moved on
            return response

        return _as_response(_call_releasing(target, attempt, ledger), request)

    def close(self) -> None:
        """Close the wrapped transport."""
        self.wrapped.close()


class AsyncFuseboxTransport(_Base[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport):
    """The asyncio twin of ``FuseboxTransport``, for ``httpx.AsyncClient``.

    ``fb`` is an ``AsyncAgent`` (or an ``Agent``, through ``target.acall``);
    ``wrapped`` defaults to ``httpx.AsyncHTTPTransport()``. A timed-out attempt
    is cancelled by the agent, and httpx enforces the same deadline itself.
    """

    _default_transport = httpx.AsyncHTTPTransport
    _replay_stream = _AsyncReplayStream

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` as one guarded call."""
        target = self._prepare(request)
        ledger: _AttemptLedger[httpx.Response] = _AttemptLedger()

        async def attempt() -> httpx.Response:
            number, stale = ledger.begin()
            if stale is not None:
                await stale.aclose()
            response = await self.wrapped.handle_async_request(_with_attempt_timeout(request))
            ledger.keep(number, response)  # one event loop: an attempt is never stale here
            return response

        return _as_response(await _acall_releasing(target, attempt, ledger), request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.wrapped.aclose()
