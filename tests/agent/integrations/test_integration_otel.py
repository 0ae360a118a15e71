"""The integrations beside OpenTelemetry's own instrumentations of requests, httpx and gRPC.

With the instrumentation *inside* the retry loop, every attempt is one client
span, a child of the caller's span, and the agent adds none: the caller's span
gets one ``fusebox.attempt`` event per attempt instead. Where the
instrumentation sits *outside* the loop (requests' wraps ``Session.send``, around
``FuseboxAdapter``; the global grpc.aio instrumentor puts its interceptors first)
its one client span covers the call and carries the attempt events: still no
duplicate. docs/observability.md says which wiring gives which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import requests
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import (
    GrpcAioInstrumentorClient,
    GrpcInstrumentorClient,
    aio_client_interceptors,
)
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from fusebox.agent import Agent, AsyncAgent
from fusebox.agent.integrations.grpc import fusebox_aio_interceptors, fusebox_interceptors
from fusebox.agent.integrations.httpx import AsyncFuseboxTransport, FuseboxTransport
from fusebox.agent.integrations.requests import FuseboxAdapter, FuseboxSession
from fusebox.agent.policy import BackoffKind, RetryPolicy
from fusebox.agent.testing import ManualClock
from tests.agent.harness import app_target, policies
from tests.agent.integrations.servers import UNARY, ScriptedGrpcServer, ScriptedHTTPServer

RETRY = RetryPolicy("threeRetries", backoff=BackoffKind.CONSTANT, duration=0.0, max_retries=3)


class Spans:
    """The global tracer provider's finished spans (the instrumentations use it)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider), "another test set a non-SDK provider"
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("tests")

    def client_spans(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]

    def caller(self) -> ReadableSpan:
        [span] = [s for s in self.exporter.get_finished_spans() if s.name == "checkout"]
        return span


_spans: Spans | None = None


@pytest.fixture
def spans() -> Iterator[Spans]:
    global _spans
    if _spans is None:
        _spans = Spans()
    _spans.exporter.clear()
    yield _spans
    _spans.exporter.clear()


def _status(span: ReadableSpan) -> Any:
    attributes = span.attributes or {}
    for key in ("http.response.status_code", "http.status_code", "rpc.grpc.status_code"):
        if key in attributes:
            return attributes[key]
    return None


def _attempt_events(span: ReadableSpan) -> list[tuple[int, str, Any]]:
    """(resend count, outcome, status) of each ``fusebox.attempt`` event on ``span``."""
    out = []
    for event in span.events:
        attributes = event.attributes or {}
        assert event.name == "fusebox.attempt"
        status = attributes.get("http.response.status_code", attributes.get(
            "rpc.grpc.status_code"))
        out.append((attributes.get("http.request.resend_count", 0),
                    attributes["fusebox.attempt.outcome"], status))
    return out


def _agent(mode: str) -> Agent | AsyncAgent:
    cls = Agent if mode == "sync" else AsyncAgent
    return cls(app_id="checkout", policies=policies(app_target(retry=RETRY)), clock=ManualClock())


def _close(fb: Agent | AsyncAgent) -> None:
    if isinstance(fb, Agent):
        fb.close()
    else:
        asyncio.run(fb.aclose())


HTTP_ATTEMPTS = [(0, "failure", 503), (1, "failure", 503), (2, "success", None)]


@pytest.fixture
def http_server() -> Iterator[ScriptedHTTPServer]:
    server = ScriptedHTTPServer().start()
    server.script(503, 503, 200)
    yield server
    server.stop()


def _one_client_span_per_attempt(spans: Spans, statuses: list[Any]) -> None:
    caller = spans.caller()
    clients = sorted(spans.client_spans(), key=lambda s: s.start_time or 0)
    assert [_status(s) for s in clients] == statuses
    assert all(s.parent is not None and s.parent.span_id == caller.context.span_id
               for s in clients), "each attempt's client span is a child of the caller's span"


# -- httpx -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_httpx_instrumentation_makes_one_client_span_per_attempt(
    mode: str, spans: Spans, http_server: ScriptedHTTPServer
) -> None:
    fb = _agent(mode)
    HTTPXClientInstrumentor().instrument()
    try:
        with spans.tracer.start_as_current_span("checkout"):
            if mode == "sync":
                with httpx.Client(transport=FuseboxTransport(fb, app="order-processor")) as c:
                    assert c.get(f"{http_server.url}/orders").status_code == 200
            else:
                async def get() -> int:
                    transport = AsyncFuseboxTransport(fb, app="order-processor")
                    async with httpx.AsyncClient(transport=transport) as client:
                        return (await client.get(f"{http_server.url}/orders")).status_code

                assert asyncio.run(get()) == 200
        _one_client_span_per_attempt(spans, [503, 503, 200])
        assert _attempt_events(spans.caller()) == HTTP_ATTEMPTS
    finally:
        HTTPXClientInstrumentor().uninstrument()
        _close(fb)


# -- requests ----------------------------------------------------------------------------


@pytest.fixture
def requests_instrumented() -> Iterator[None]:
    RequestsInstrumentor().instrument()
    yield
    RequestsInstrumentor().uninstrument()


def test_requests_fusebox_session_makes_one_client_span_per_attempt(
    spans: Spans, http_server: ScriptedHTTPServer, requests_instrumented: None
) -> None:
    fb = _agent("sync")
    try:
        with spans.tracer.start_as_current_span("checkout"), FuseboxSession(
                fb, app="order-processor") as session:
            assert session.get(f"{http_server.url}/orders").status_code == 200
        _one_client_span_per_attempt(spans, [503, 503, 200])
        assert _attempt_events(spans.caller()) == HTTP_ATTEMPTS
    finally:
        fb.close()


def test_requests_adapter_under_the_instrumentation_is_one_client_span_with_the_attempts(
    spans: Spans, http_server: ScriptedHTTPServer, requests_instrumented: None
) -> None:
    fb = _agent("sync")
    try:
        with spans.tracer.start_as_current_span("checkout"), requests.Session() as session:
            session.mount("http://", FuseboxAdapter(fb, app="order-processor"))
            assert session.get(f"{http_server.url}/orders").status_code == 200
        [client] = spans.client_spans()  # Session.send's, around every attempt: no duplicate
        assert _status(client) == 200
        assert _attempt_events(client) == HTTP_ATTEMPTS
        assert len(http_server.hits) == 3
    finally:
        fb.close()


# -- gRPC --------------------------------------------------------------------------------


@pytest.fixture
def grpc_server() -> Iterator[ScriptedGrpcServer]:
    server = ScriptedGrpcServer().start()
    server.script(UNARY, 14, 14, 0)
    yield server
    server.stop()


GRPC_ATTEMPTS = [(0, "failure", 14), (1, "failure", 14), (2, "success", None)]


def test_grpc_instrumentation_makes_one_client_span_per_attempt(
    spans: Spans, grpc_server: ScriptedGrpcServer
) -> None:
    fb = _agent("sync")
    GrpcInstrumentorClient().instrument()
    try:
        channel = grpc.intercept_channel(grpc.insecure_channel(grpc_server.address),
                                         *fusebox_interceptors(fb, app="order-processor"))
        with spans.tracer.start_as_current_span("checkout"):
            assert channel.unary_unary(UNARY)(b"hi") == b"hi"
        channel.close()
        _one_client_span_per_attempt(spans, [14, 14, 0])
        assert _attempt_events(spans.caller()) == GRPC_ATTEMPTS
    finally:
        GrpcInstrumentorClient().uninstrument()
        fb.close()


def test_grpc_aio_interceptors_after_fusebox_make_one_client_span_per_attempt(
    spans: Spans, grpc_server: ScriptedGrpcServer
) -> None:
    fb = _agent("async")

    async def call() -> bytes:
        interceptors = [*fusebox_aio_interceptors(fb, app="order-processor"),
                        *aio_client_interceptors()]
        async with grpc.aio.insecure_channel(grpc_server.address,
                                             interceptors=interceptors) as channel:
            with spans.tracer.start_as_current_span("checkout"):
                return await channel.unary_unary(UNARY)(b"hi")  # type: ignore[no-any-return]

    try:
        assert asyncio.run(call()) == b"hi"
        _one_client_span_per_attempt(spans, [14, 14, 0])
        assert _attempt_events(spans.caller()) == GRPC_ATTEMPTS
    finally:
        _close(fb)


def test_grpc_aio_global_instrumentor_is_one_client_span_with_the_attempts(
    spans: Spans, grpc_server: ScriptedGrpcServer
) -> None:
    fb = _agent("async")
    GrpcAioInstrumentorClient().instrument()

    async def call() -> bytes:
        interceptors = fusebox_aio_interceptors(fb, app="order-processor")
        async with grpc.aio.insecure_channel(grpc_server.address,
                                             interceptors=interceptors) as channel:
            with spans.tracer.start_as_current_span("checkout"):
                return await channel.unary_unary(UNARY)(b"hi")  # type: ignore[no-any-return]

    try:
        assert asyncio.run(call()) == b"hi"
        [client] = spans.client_spans()  # the instrumentor's, first in line: no duplicate
        assert _attempt_events(client) == GRPC_ATTEMPTS
        assert grpc_server.hits[UNARY] == 3
    finally:
        GrpcAioInstrumentorClient().uninstrument()
        _close(fb)
