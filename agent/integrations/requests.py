"""``requests`` integration: a transport adapter that guards every request of a Session.

>>> import requests
>>> from fusebox.agent.integrations.requests import FuseboxAdapter
>>> session = requests.Session()
>>> session.mount("http://", FuseboxAdapter(fb, app="order-processor"))  # doctest: +SKIP
>>> session.post("http://order-processor:8080/orders", json=order)  # doctest: +SKIP

``FuseboxSession(fb, app=...)`` guards one level up, around ``Session.send``:
with OpenTelemetry's requests instrumentation, one client span per attempt
(docs/observability.md).

Target method: by default the URL path without its leading slash (Dapr's
method name: ``orders`` for ``/orders``); ``method=`` fixes it or derives it
from the ``PreparedRequest``; ``app=`` likewise.

Requires ``requests`` (``pip install 'fusebox-resilience[integrations]'``).
"""

from __future__ import annotations

import contextvars
import http
import io
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from fusebox.agent._agent import Agent, AsyncAgent
from fusebox.agent.classify import FAILURE, Classifier, Outcome, http_outcome, parse_retry_after
from fusebox.agent.extras import missing_extra
from fusebox.agent.integrations import (
    _attempt_timeout,
    _AttemptLedger,
    _call_releasing,
    _choose,
    _ReplayableIterable,
)
from fusebox.agent.policy import FallbackResponse

try:
    from requests import PreparedRequest, Response, Session
    from requests.adapters import HTTPAdapter
    from requests.structures import CaseInsensitiveDict
    from requests.utils import get_encoding_from_headers, rewind_body
except ModuleNotFoundError as missing:  # the optional dependency, with the extra to install
    raise missing_extra("requests", "integrations", __name__) from missing

__all__ = ["FuseboxAdapter", "FuseboxSession", "classify_response", "response_from_fallback",
           "url_path_method"]

RequestName = str | Callable[[PreparedRequest], str]

_RETRY_AFTER_STATUSES = frozenset({429, 503})


def classify_response(result: Any, error: BaseException | None) -> Outcome:
    """Dapr's rule for a ``requests.Response``: status < 200 or > 399 is a failure.

    ``Retry-After`` is read on 429 and 503; exceptions (connection errors,
    timeouts) are failures without a status, so retry ``matching`` always
    retries them.
    """
    if error is not None:
        return FAILURE
    if not isinstance(result, Response):
        return Outcome(True)
    retry_after = None
    if result.status_code in _RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(result.headers.get("Retry-After"))
    return http_outcome(result.status_code, retry_after)


def url_path_method(request: PreparedRequest) -> str:
    """Dapr's method name for an HTTP call: the URL path without its leading slash."""
    return urlsplit(request.url or "").path.lstrip("/")


def response_from_fallback(
    fallback: FallbackResponse, request: PreparedRequest, adapter: HTTPAdapter | None = None,
) -> Response:
    """Turn a static fallback into a real ``requests.Response`` with its status, headers, body."""
    response = Response()
    response.status_code = fallback.status
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
    for name, value in fallback.headers:  # repeated headers fold as HTTP allows: "a, b"
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    response.headers = headers
    response._content = fallback.body
    response.raw = io.BytesIO(fallback.body)
    try:
        response.reason = http.HTTPStatus(fallback.status).phrase
    except ValueError:
        response.reason = ""
    response.encoding = get_encoding_from_headers(headers)
    response.url = request.url or ""
    response.request = request
    if adapter is not None:
        response.connection = adapter
    return response


class FuseboxAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` that sends each request under a Fusebox target's policies.

    ``fb`` is an ``Agent`` (or an ``AsyncAgent``: the request then blocks the
    caller, as ``target.call_sync`` does). ``app`` is the target app-id, or a
    callable of the ``PreparedRequest``; ``method`` the target method (default:
    the URL path without its leading slash), fixed or a callable.
    ``classifier`` replaces ``classify_response``. Other keywords go to
    ``HTTPAdapter`` (``pool_connections``, ``pool_maxsize``, ...); do not pass
    ``max_retries``: retrying is the policies' job.

    Per attempt, the remaining time of the attempt's timeout becomes the
    request's own connect and read timeout (or tightens the one given to
    ``session.request``), so a timed-out attempt is interrupted by the socket
    rather than left running. Responses of failed attempts that are retried are
    closed. After the last attempt, a failing response is returned as is and
    an exception is re-raised unchanged; a static fallback comes back as a real
    ``requests.Response``.
    """

    def __init__(
        self,
        fb: Agent | AsyncAgent,
        *,
        app: RequestName,
        method: RequestName | None = None,
        classifier: Classifier | None = None,
        **adapter_kwargs: Any,
    ) -> None:
        super().__init__(**adapter_kwargs)
        self.fb = fb
        self.app = app
        self.method: RequestName = url_path_method if method is None else method
        self.classifier = classifier or classify_response

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Send ``request`` as one guarded call; see the class docstring."""

        def send_once(attempt_timeout: Any) -> Response:
            return HTTPAdapter.send(self, request, stream=stream, timeout=attempt_timeout,
                                    verify=verify, cert=cert, proxies=proxies)

        return _send_guarded(self.fb, self.app, self.method, self.classifier, request,
                             send_once, timeout, self)


class FuseboxSession(Session):
    """A ``requests.Session`` whose every request is one guarded call, each attempt a
    whole ``Session.send``.

    Same arguments and behaviour as ``FuseboxAdapter`` (``fb``, ``app``,
    ``method``, ``classifier``), one level up: the retry loop runs *around*
    ``Session.send``, so OpenTelemetry's requests instrumentation (which wraps
    ``Session.send``) makes one client span per attempt, the retries' carrying
    the attempt's place, while with the adapter its one span covers every
    attempt. Redirects are followed inside an attempt, as ``Session.send``
    does; cookies and response hooks apply to each attempt.

    >>> session = FuseboxSession(fb, app="order-processor")  # doctest: +SKIP
    >>> session.post("http://order-processor:8080/orders", json=order)  # doctest: +SKIP
    """

    def __init__(self, fb: Agent | AsyncAgent, *, app: RequestName,
                 method: RequestName | None = None, classifier: Classifier | None = None) -> None:
        super().__init__()
        self.fb = fb
        self.app = app
        self.method: RequestName = url_path_method if method is None else method
        self.classifier = classifier or classify_response

    def send(self, request: PreparedRequest, **kwargs: Any) -> Response:
        """Send ``request`` as one guarded call (a redirect hop inside an attempt: as is)."""
        if _in_attempt.get():  # Session.send following a redirect of the running attempt
            return Session.send(self, request, **kwargs)
        timeout = kwargs.pop("timeout", None)

        def send_once(attempt_timeout: Any) -> Response:
            entered = _in_attempt.set(True)
            try:
                # Session.send as the class has it now: instrumented, when it is.
                return Session.send(self, request, timeout=attempt_timeout, **kwargs)
            finally:
                _in_attempt.reset(entered)

        return _send_guarded(self.fb, self.app, self.method, self.classifier, request,
                             send_once, timeout, None)


#: Set while a ``FuseboxSession`` attempt runs ``Session.send`` (which re-enters ``send``
#: for redirects): those hops are part of the attempt.
_in_attempt: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fusebox_requests_attempt", default=False)


def _send_guarded(
    fb: Agent | AsyncAgent, app: RequestName, method: RequestName,
    classifier: Classifier, request: PreparedRequest,
    send_once: Callable[[Any], Response], timeout: Any, adapter: HTTPAdapter | None,
) -> Response:
    """One guarded call whose attempts are ``send_once(attempt_timeout)``."""
    app_id = _choose(app, request)
    assert app_id is not None
    target = fb.app(app_id, method=_choose(method, request) or None, classifier=classifier)
    _make_body_replayable(request)
    ledger: _AttemptLedger[Response] = _AttemptLedger()

    def attempt() -> Response:
        number, stale = ledger.begin()
        if stale is not None:
            stale.close()  # the agent retries: release the failed response's connection
        if number > 1 and isinstance(getattr(request, "_body_position", None), int):
            rewind_body(request)
        response = send_once(_tighten(timeout))
        if not ledger.keep(number, response):
            response.close()  # an abandoned attempt finished after its caller moved on
        return response

    result = _call_releasing(target, attempt, ledger)
    if isinstance(result, Response):
        return result
    if isinstance(result, FallbackResponse):
        return response_from_fallback(result, request, adapter)
    raise TypeError(
        f"a fallback for {request.method} {request.url} returned {type(result).__name__};"
        " the requests integration needs a requests.Response or a FallbackResponse"
    )


def _tighten(timeout: Any) -> Any:
    """The caller's timeout, tightened to the attempt's remaining time."""
    if timeout is None or isinstance(timeout, int | float):
        return _attempt_timeout(timeout)
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
        return _attempt_timeout(connect), _attempt_timeout(read)
    return timeout  # a urllib3 Timeout object: the caller chose it precisely; keep it


def _make_body_replayable(request: PreparedRequest) -> None:
    """Make a retried attempt send the same body again.

    Bytes and text are replayed as they are; a seekable file is rewound (where
    ``requests`` recorded its position); any other iterable (a generator, an
    unseekable file) is recorded as it streams so that a retry replays it.
    """
    body: Any = request.body
    if body is None or isinstance(body, str | bytes | bytearray):
        return
    if hasattr(body, "read"):
        if isinstance(getattr(request, "_body_position", None), int):
            return
        source = body
        body = iter(lambda: source.read(64 * 1024), b"")
    if isinstance(body, Iterable):
        request.body = _ReplayableIterable(body)  # type: ignore[assignment]
