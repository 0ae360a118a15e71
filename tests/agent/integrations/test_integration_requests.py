"""The requests adapter against a real local HTTP server."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from fusebox.agent import Agent, BreakerOpenError
from fusebox.agent.classify import Outcome
from fusebox.agent.events import TargetStats
from fusebox.agent.integrations.requests import FuseboxAdapter, FuseboxSession
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
    closed_port_url,
    fusebox_threads,
    wait_for,
)


@pytest.fixture
def server() -> Iterator[ScriptedHTTPServer]:
    server = ScriptedHTTPServer().start()
    yield server
    server.stop()


class Client:
    """An agent with static policies, a manual clock, and a Session through the adapter."""

    def __init__(self, **target: Any) -> None:
        self.clock = ManualClock()
        self.fb = Agent(app_id="checkout", policies=policies(app_target(**target)),
                        clock=self.clock)
        self.session = requests.Session()

    def mount(self, **kwargs: Any) -> Client:
        self.session.mount("http://", FuseboxAdapter(self.fb, **{"app": "order-processor",
                                                                  **kwargs}))
        return self

    def close(self) -> None:
        self.session.close()
        self.fb.close()


@pytest.fixture
def make_client() -> Iterator[Any]:
    clients: list[Client] = []

    def make(**target: Any) -> Client:
        client = Client(**target)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def retry(**kwargs: Any) -> RetryPolicy:
    return RetryPolicy("retry", **{"duration": 5.0, **kwargs})


@pytest.mark.timeout(20)  # a leaked connection would block the one-connection pool forever
def test_503_is_retried_until_success_and_failed_responses_release_their_connection(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=3)).mount(pool_maxsize=1, pool_block=True)
    server.script(503, 503, Reply(200, b"done"))
    response = client.session.get(f"{server.url}/orders")
    assert (response.status_code, response.content) == (200, b"done")
    assert len(server.hits) == 3
    assert client.clock.sleeps == [5.0, 5.0]
    assert set(client.fb.stats()) == {"order-processor:orders"}  # Dapr's method: the path


@pytest.mark.parametrize(("status", "hits"), [(500, 3), (501, 1)])
def test_matching_500_retries_500_but_not_501_and_returns_the_last_response(
    server: ScriptedHTTPServer, make_client: Any, status: int, hits: int
) -> None:
    codes = StatusCodes(((500, 500),))
    client = make_client(retry=retry(max_retries=2, http_status_codes=codes)).mount()
    server.script(status)
    response = client.session.get(f"{server.url}/orders")
    assert response.status_code == status
    assert response.content == str(status).encode()  # a real, readable response
    assert len(server.hits) == hits


def test_an_open_breaker_fails_fast_without_reaching_the_server(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    breaker = CircuitBreakerPolicy("cb", trip="consecutiveFailures > 1", timeout=30.0)
    client = make_client(circuit_breaker=breaker).mount()
    server.script(500)
    for _ in range(2):
        assert client.session.get(f"{server.url}/orders").status_code == 500
    with pytest.raises(BreakerOpenError) as caught:
        client.session.get(f"{server.url}/orders")
    assert caught.value.breaker == "order-processor:orders"
    assert len(server.hits) == 2


def test_connection_errors_are_retried_then_reraised_unchanged(make_client: Any) -> None:
    client = make_client(retry=retry(max_retries=2)).mount()
    with pytest.raises(requests.ConnectionError) as caught:
        client.session.get(f"{closed_port_url()}/orders")
    assert "failed after 3 attempts" in caught.value.__notes__[0]
    assert client.fb.stats()["order-processor:orders"].retries == 2


def test_a_slow_attempt_is_cut_by_its_own_timeout_retried_and_leaves_no_thread(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    baseline = threading.active_count()
    client = make_client(timeout=TimeoutPolicy("t", 0.2), retry=retry(max_retries=1)).mount()
    server.script(Reply(block=True), Reply(200, b"fast"))
    response = client.session.get(f"{server.url}/orders")
    assert (response.status_code, response.content) == (200, b"fast")
    assert len(server.hits) == 2
    assert server.blocked == 1  # the server is still holding the first reply: the client moved on
    # The abandoned attempt's socket read timed out by itself: its worker is free,
    # so closing the agent ends every worker while the server still holds the reply.
    client.fb.close()
    wait_for(lambda: not fusebox_threads())
    server.release.set()
    del response  # with the session closed, this ends the second attempt's keep-alive socket
    client.session.close()
    # The abandoned attempt's ReadTimeout sits in a reference cycle (urllib3's
    # traceback frames) that keeps its socket object until the collector runs.
    wait_for(lambda: gc.collect() >= 0 and threading.active_count() <= baseline)


def test_a_static_fallback_becomes_a_real_response(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    fallback = FallbackPolicy("fb", response=FallbackResponse(
        200, (("Content-Type", "application/json"), ("X-Fallback", "yes")), b'{"cached": true}',
    ))
    client = make_client(retry=retry(max_retries=1), fallback=fallback).mount()
    server.script(503)
    response = client.session.get(f"{server.url}/orders")
    assert isinstance(response, requests.Response)
    assert response.status_code == 200
    assert response.headers["x-fallback"] == "yes"
    assert response.json() == {"cached": True}
    assert response.url == f"{server.url}/orders"
    assert len(server.hits) == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_when_the_policy_asks(
    server: ScriptedHTTPServer, make_client: Any, status: int
) -> None:
    client = make_client(retry=retry(max_retries=2, honor_retry_after=True)).mount()
    server.script(Reply(status, headers={"Retry-After": "2"}), 200)
    assert client.session.get(f"{server.url}/orders").status_code == 200
    assert client.clock.sleeps == [2.0]


def test_bytes_and_generator_bodies_are_sent_again_on_a_retry(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=1)).mount()
    server.script(503, 200)
    client.session.post(f"{server.url}/orders", data=b"order-1")
    server.hits.clear()
    client.session.post(f"{server.url}/orders", data=(part for part in [b"ord", b"er-2"]))
    assert [hit.body for hit in server.hits] == [b"order-2", b"order-2"]


def test_app_and_method_can_be_fixed_or_derived_from_the_request(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=1)).mount(app=lambda request: "order-processor",
                                 method=lambda request: request.method.lower())
    client.session.post(f"{server.url}/orders/42", data=b"x")
    assert set(client.fb.stats()) == {"order-processor:post"}


def test_a_user_classifier_replaces_dapr_status_rule(
    server: ScriptedHTTPServer, make_client: Any
) -> None:
    def everything_succeeds(result: Any, error: BaseException | None) -> Outcome:
        return Outcome(error is None)

    client = make_client(retry=retry(max_retries=3)).mount(classifier=everything_succeeds)
    server.script(503)
    assert client.session.get(f"{server.url}/orders").status_code == 503
    assert len(server.hits) == 1


# -- FuseboxSession: the same guard one level up, around Session.send --------------------


@pytest.fixture
def session_of() -> Iterator[Any]:
    made: list[tuple[Agent, FuseboxSession]] = []

    def make(**target: Any) -> FuseboxSession:
        fb = Agent(app_id="checkout", policies=policies(app_target(**target)),
                   clock=ManualClock())
        session = FuseboxSession(fb, app="order-processor")
        made.append((fb, session))
        return session

    yield make
    for fb, session in made:
        session.close()
        fb.close()


@pytest.mark.timeout(20)
def test_a_fusebox_session_retries_a_503_and_answers_with_the_fallback(
    session_of: Any, server: ScriptedHTTPServer
) -> None:
    session = session_of(retry=retry(max_retries=2))
    server.script(503, 503, 200)
    assert session.get(f"{server.url}/orders").status_code == 200
    assert len(server.hits) == 3
    fallback = FallbackPolicy("static", response=FallbackResponse(200, body=b"cached"))
    session = session_of(retry=retry(max_retries=1), fallback=fallback)
    server.script(500)
    response = session.post(f"{server.url}/orders", data=b"order")
    assert (response.status_code, response.content) == (200, b"cached")
    assert [h.body for h in server.hits[3:]] == [b"order", b"order"]
    stats = session.fb.stats()["order-processor:orders"]
    assert (stats.calls, stats.retries, stats.fallbacks) == (1, 1, 1)


@pytest.mark.timeout(20)
def test_a_redirect_followed_inside_a_fusebox_session_attempt_is_not_another_guarded_call(
    session_of: Any, server: ScriptedHTTPServer
) -> None:
    session = session_of(retry=retry(max_retries=2))
    server.script(Reply(302, headers={"Location": "/moved"}), 200)
    response = session.get(f"{server.url}/orders")
    assert response.status_code == 200
    assert [h.path for h in server.hits] == ["/orders", "/moved"]
    assert session.fb.stats() == {"order-processor:orders": TargetStats(1, 1)}
