"""The httpx transports, sync and async, against a real local HTTP server."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError
from fusebox.agent.classify import Outcome
from fusebox.agent.integrations.httpx import AsyncFuseboxTransport, FuseboxTransport
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    FallbackPolicy,
    FallbackResponse,
    RetryPolicy,
    StatusCodes,
    TimeoutPolicy,
)
from fusebox.agent.testing import ManualClock
from tests.agent.harness import app_target, policies
from tests.agent.integrations.servers import (
    Reply,
    ScriptedHTTPServer,
    fusebox_threads,
    wait_for,
)

pytestmark = pytest.mark.parametrize("mode", ["sync", "async"])


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    server = ScriptedHTTPServer().start()
    yield server
    server.stop()


class Client:
    """One agent and one httpx client of the same flavour; ``request`` works for both."""

    def __init__(self, mode: str, transport_kwargs: dict[str, Any], **target: Any) -> None:
        self.mode = mode
        self.clock = ManualClock()
        resolved = policies(app_target(**target))
        self.transport_kwargs = {"app": "order-processor", **transport_kwargs}
        if mode == "sync":
            self.fb: Agent | AsyncAgent = Agent(app_id="checkout", policies=resolved,
                                                clock=self.clock)
            self.client = httpx.Client(
                transport=FuseboxTransport(self.fb, **self.transport_kwargs))
        else:
            self.fb = AsyncAgent(app_id="checkout", policies=resolved, clock=self.clock)

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        if self.mode == "sync":
            return self.client.request(method, url, **kwargs)

        async def send() -> httpx.Response:
            # One client per event loop: each asyncio.run() is a new loop.
            transport = AsyncFuseboxTransport(self.fb, **self.transport_kwargs)
            async with httpx.AsyncClient(transport=transport) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def close(self) -> None:
        if isinstance(self.fb, Agent):
            self.client.close()
            self.fb.close()
        else:
            asyncio.run(self.fb.aclose())


@pytest.fixture
def make_client(mode: str) -> Iterator[Any]:
    clients: list[Client] = []

    def make(transport: dict[str, Any] | None = None, **target: Any) -> Client:
        client = Client(mode, transport or {}, **target)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def retry(**kwargs: Any) -> RetryPolicy:
    return RetryPolicy("retry", **{"duration": 5.0, **kwargs})


def test_503_is_retried_until_success(server: ScriptedHTTPServer, make_client: Any) -> None:
    client = make_client(retry=retry(max_retries=3))
    server.script(503, 503, Reply(200, b"done"))
    response = client.request("GET", f"{server.url}/orders")
    assert (response.status_code, response.content) == (200, b"done")
    assert len(server.hits) == 3
    assert client.clock.sleeps == [5.0, 5.0]
    assert set(client.fb.stats()) == {"order-processor:orders"}


@pytest.mark.parametrize(("status", "hits"), [(500, 3), (501, 1)])
def test_matching_500_retries_500_but_not_501_and_returns_the_last_response(
    server: ScriptedHTTPServer, make_client: Any, status: int, hits: int
) -> None:
    codes = StatusCodes(((500, 500),))
    client = make_client(retry=retry(max_retries=2, http_status_codes=codes))
    server.script(status)
    response = client.request("GET", f"{server.url}/orders")
    assert (response.status_code, response.content) == (status, str(status).encode())
    assert len(server.hits) == hits


def test_an_open_breaker_fails_fast_without_reaching_the_server(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    breaker = CircuitBreakerPolicy("cb", trip="consecutiveFailures > 1", timeout=30.0)
    client = make_client(circuit_breaker=breaker)
    server.script(500)
    for _ in range(2):
        assert client.request("GET", f"{server.url}/orders").status_code == 500
    with pytest.raises(BreakerOpenError):
        client.request("GET", f"{server.url}/orders")
    assert len(server.hits) == 2


def test_a_slow_attempt_times_out_is_retried_and_leaves_no_thread(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    baseline = threading.active_count()
    client = make_client(timeout=TimeoutPolicy("t", 0.2), retry=retry(max_retries=1))
    server.script(Reply(block=True), Reply(200, b"fast"))
    response = client.request("GET", f"{server.url}/orders")
    assert (response.status_code, response.content) == (200, b"fast")
    assert len(server.hits) == 2
    assert server.blocked == 1  # the client moved on while the server still held the reply
    client.close()
    wait_for(lambda: not fusebox_threads())  # no worker stuck in the abandoned read
    server.release.set()
    del response
    wait_for(lambda: threading.active_count() <= baseline)


def test_a_static_fallback_becomes_a_real_response(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    fallback = FallbackPolicy("fb", response=FallbackResponse(
        200, (("Content-Type", "application/json"), ("X-Fallback", "yes")), b'{"cached": true}',
    ))
    client = make_client(retry=retry(max_retries=1), fallback=fallback)
    server.script(503)
    response = client.request("GET", f"{server.url}/orders")
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200
    assert response.headers["x-fallback"] == "yes"
    assert response.json() == {"cached": True}
    assert len(server.hits) == 2


def test_retry_after_is_honoured_when_the_policy_asks(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=2, honor_retry_after=True))
    server.script(Reply(429, headers={"Retry-After": "2"}), 200)
    assert client.request("GET", f"{server.url}/orders").status_code == 200
    assert client.clock.sleeps == [2.0]


def test_streamed_request_bodies_are_replayed_on_a_retry(
    server: ScriptedHTTPServer, make_client: Any, mode: str
) -> None:
    client = make_client(retry=retry(max_retries=1))
    server.script(503, 200)

    def parts() -> Iterator[bytes]:
        yield from (b"ord", b"er-1")

    async def async_parts() -> Any:
        for part in (b"ord", b"er-1"):
            yield part

    client.request("POST", f"{server.url}/orders",
                   content=parts() if mode == "sync" else async_parts())
    assert [hit.body for hit in server.hits] == [b"order-1", b"order-1"]


def test_a_user_classifier_and_a_derived_method_are_used(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    def everything_succeeds(result: Any, error: BaseException | None) -> Outcome:
        return Outcome(error is None)

    client = make_client({"classifier": everything_succeeds, "method": lambda r: "fixed"},
                         retry=retry(max_retries=3))
    server.script(503)
    assert client.request("GET", f"{server.url}/orders").status_code == 503
    assert len(server.hits) == 1
    assert set(client.fb.stats()) == {"order-processor:fixed"}
