"""The gRPC client interceptors, sync and grpc.aio, against a real local gRPC server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError
from fusebox.agent.integrations.grpc import fusebox_aio_interceptors, fusebox_interceptors
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
    BIDI,
    CLIENT_STREAM,
    MID_STREAM_FAILURE,
    SERVER_STREAM,
    SLOW,
    UNARY,
    ScriptedGrpcServer,
    fusebox_threads,
    wait_for,
)

pytestmark = pytest.mark.parametrize("mode", ["sync", "aio"])


@pytest.fixture
def server() -> Iterator[ScriptedGrpcServer]:
    server = ScriptedGrpcServer().start()
    yield server
    server.stop()


async def _agen(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


class Client:
    """An agent and a channel of one flavour; each RPC shape callable the same way."""

    def __init__(self, mode: str, address: str, interceptor_kwargs: dict[str, Any],
                 fallbacks: dict[str, Callable[..., Any]] | None = None, **target: Any) -> None:
        self.mode = mode
        self.address = address
        self.clock = ManualClock()
        resolved = policies(app_target(**target))
        self.kwargs = {"app": "order-processor", **interceptor_kwargs}
        if mode == "sync":
            self.fb: Agent | AsyncAgent = Agent(app_id="checkout", policies=resolved,
                                                clock=self.clock, fallbacks=fallbacks)
            self.channel = grpc.intercept_channel(grpc.insecure_channel(address),
                                                  *fusebox_interceptors(self.fb, **self.kwargs))
        else:
            self.fb = AsyncAgent(app_id="checkout", policies=resolved, clock=self.clock,
                                 fallbacks=fallbacks)

    def _aio(self, rpc: Callable[[grpc.aio.Channel], Any]) -> Any:
        async def run() -> Any:
            # A grpc.aio channel belongs to one event loop: one per asyncio.run().
            interceptors = fusebox_aio_interceptors(self.fb, **self.kwargs)
            async with grpc.aio.insecure_channel(self.address,
                                                 interceptors=interceptors) as channel:
                return await rpc(channel)

        return asyncio.run(run())

    def unary(self, request: bytes = b"hello") -> bytes:
        if self.mode == "sync":
            return self.channel.unary_unary(UNARY)(request)  # type: ignore[no-any-return]
        return self._aio(lambda ch: ch.unary_unary(UNARY)(request))  # type: ignore[no-any-return]

    def server_stream(self, received: list[bytes] | None = None) -> list[bytes]:
        received = [] if received is None else received
        if self.mode == "sync":
            for message in self.channel.unary_stream(SERVER_STREAM)(b"go"):
                received.append(message)
            return received

        async def read(channel: grpc.aio.Channel) -> list[bytes]:
            async for message in channel.unary_stream(SERVER_STREAM)(b"go"):
                received.append(message)
            return received

        return self._aio(read)  # type: ignore[no-any-return]

    def client_stream(self, requests: list[bytes]) -> bytes:
        if self.mode == "sync":
            return self.channel.stream_unary(CLIENT_STREAM)(  # type: ignore[no-any-return]
                request for request in requests)
        return self._aio(  # type: ignore[no-any-return]
            lambda ch: ch.stream_unary(CLIENT_STREAM)(_agen(requests)))

    def bidi(self, requests: list[bytes]) -> list[bytes]:
        if self.mode == "sync":
            return list(self.channel.stream_stream(BIDI)(request for request in requests))

        async def read(channel: grpc.aio.Channel) -> list[bytes]:
            return [m async for m in channel.stream_stream(BIDI)(_agen(requests))]

        return self._aio(read)  # type: ignore[no-any-return]

    def close(self) -> None:
        if isinstance(self.fb, Agent):
            self.channel.close()
            self.fb.close()
        else:
            asyncio.run(self.fb.aclose())


@pytest.fixture
def make_client(mode: str, server: ScriptedGrpcServer) -> Iterator[Any]:
    clients: list[Client] = []

    def make(interceptors: dict[str, Any] | None = None, **target: Any) -> Client:
        client = Client(mode, server.address, interceptors or {}, **target)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def retry(**kwargs: Any) -> RetryPolicy:
    return RetryPolicy("retry", **{"duration": 1.0, **kwargs})


def test_unavailable_is_retried_until_success(
    server: ScriptedGrpcServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=3))
    server.script(UNARY, 14, 14, 0)
    assert client.unary(b"order") == b"order"
    assert server.hits[UNARY] == 3
    assert client.clock.sleeps == [1.0, 1.0]
    assert set(client.fb.stats()) == {"order-processor:/test.Echo/Unary"}


@pytest.mark.parametrize(("code", "hits"), [(14, 2), (3, 1)])
def test_matching_14_retries_unavailable_but_not_invalid_argument(
    server: ScriptedGrpcServer, make_client: Any, code: int, hits: int
) -> None:
    codes = StatusCodes(((14, 14),))
    client = make_client(retry=retry(max_retries=1, grpc_status_codes=codes))
    server.script(UNARY, code)
    with pytest.raises(grpc.RpcError) as caught:
        client.unary()
    assert caught.value.code().value[0] == code
    assert server.hits[UNARY] == hits


def test_an_open_breaker_fails_fast_without_reaching_the_server(
    server: ScriptedGrpcServer, make_client: Any
) -> None:
    breaker = CircuitBreakerPolicy("cb", trip="consecutiveFailures > 1", timeout=30.0)
    client = make_client(circuit_breaker=breaker)
    server.script(UNARY, 14)
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            client.unary()
    with pytest.raises(BreakerOpenError) as caught:
        client.unary()
    assert caught.value.breaker == "order-processor:/test.Echo/Unary"
    assert server.hits[UNARY] == 2


def test_a_slow_unary_attempt_is_cut_by_its_deadline_and_retried(
    server: ScriptedGrpcServer, make_client: Any, mode: str
) -> None:
    client = make_client(timeout=TimeoutPolicy("t", 0.2), retry=retry(max_retries=1))
    server.script(UNARY, SLOW, 0)
    assert client.unary(b"second") == b"second"
    assert server.hits[UNARY] == 2
    assert server.blocked == 1  # the client moved on while the server still held the call
    assert client.fb.stats()["order-processor:/test.Echo/Unary"].retries == 1
    if mode == "sync":
        # The abandoned attempt's worker was freed by the call's own gRPC deadline,
        # not by the server: closing the agent ends every worker while it still blocks.
        client.fb.close()
        wait_for(lambda: not fusebox_threads())


def test_a_server_stream_is_retried_until_its_first_message(
    server: ScriptedGrpcServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=2))
    server.script(SERVER_STREAM, 14, 0)
    assert client.server_stream() == [b"a", b"b", b"c"]
    assert server.hits[SERVER_STREAM] == 2


def test_a_failure_after_the_first_message_is_raised_but_not_retried(
    server: ScriptedGrpcServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=3))
    server.script(SERVER_STREAM, MID_STREAM_FAILURE)
    received: list[bytes] = []
    with pytest.raises(grpc.RpcError) as caught:
        client.server_stream(received)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert received == [b"a"]
    assert server.hits[SERVER_STREAM] == 1


def test_a_client_stream_is_sent_again_on_a_retry(
    server: ScriptedGrpcServer, make_client: Any
) -> None:
    client = make_client(retry=retry(max_retries=1))
    server.script(CLIENT_STREAM, 14, 0)
    assert client.client_stream([b"x", b"y", b"z"]) == b"xyz"
    assert server.received == [b"xyz", b"xyz"]


def test_a_bidi_stream_is_retried(server: ScriptedGrpcServer, make_client: Any) -> None:
    client = make_client(retry=retry(max_retries=1))
    server.script(BIDI, 14, 0)
    assert client.bidi([b"x", b"y"]) == [b"X", b"Y"]
    assert server.hits[BIDI] == 2


def test_fallbacks_answer_with_a_message(
    server: ScriptedGrpcServer, make_client: Any, mode: str
) -> None:
    static = FallbackPolicy("static", response=FallbackResponse(body=b"static"))
    client = make_client({"fallback_deserializer": lambda method, body: body}, fallback=static,
                         retry=retry(max_retries=1))
    server.script(UNARY, 14)
    assert client.unary() == b"static"

    server.script(CLIENT_STREAM, 14)
    by_function = FallbackPolicy("fn", function="cached")
    other = Client(mode, server.address, {}, fallbacks={"cached": lambda failure: b"cached"},
                   fallback=by_function)
    try:
        assert other.client_stream([b"x"]) == b"cached"
    finally:
        other.close()


def test_a_stream_slow_to_its_first_message_is_cancelled_and_retried(
    server: ScriptedGrpcServer, make_client: Any, mode: str
) -> None:
    client = make_client(timeout=TimeoutPolicy("t", 0.2), retry=retry(max_retries=1))
    server.script(SERVER_STREAM, SLOW, 0)
    assert client.server_stream() == [b"a", b"b", b"c"]
    assert server.hits[SERVER_STREAM] == 2
    assert server.blocked == 1
    if mode == "sync":
        # A stream has no deadline of its own: only cancelling the abandoned call
        # frees the worker blocked on its first message.
        client.fb.close()
        wait_for(lambda: not fusebox_threads())
