"""The sidecar's HTTP API in process: URL forms, forwarding, open breaker, healthz, registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from fusebox.agent import AsyncAgent
from fusebox.agent.policy import (
    CircuitBreakerPolicy,
    ResolvedPolicies,
    TargetKind,
    TargetPolicy,
)
from fusebox.controlplane.server.engines.instance_registry import (
    MemoryInstanceRegistry,
    RegisteredInstance,
)
from fusebox.controlplane.sidecar import SidecarProxy
from fusebox.controlplane.sidecar._discovery import AppNotFound


class StaticResolver:
    """Resolves every app to the given addresses (the registry has its own tests)."""

    def __init__(self, addresses: list[str]) -> None:
        self.list = addresses
        self.turn = 0

    async def next_address(self, app_id: str) -> str:
        if not self.list:
            raise AppNotFound(app_id)
        self.turn += 1
        return self.list[(self.turn - 1) % len(self.list)]

    def forget(self, app_id: str) -> None:
        return None


@dataclass
class Seen:
    requests: list[tuple[str, str, dict[str, str], bytes]]


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen([])

    async def handle(request: web.Request) -> web.Response:
        seen.requests.append((request.method, str(request.rel_url), dict(request.headers),
                              await request.read()))
        status = 503 if request.path == "/fail" else 201
        return web.Response(status=status, body=b"made", headers={"X-Upstream": "1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


def breaker_policies(max_failures: int = 1) -> ResolvedPolicies:
    breaker = CircuitBreakerPolicy(name="cb", max_requests=1, interval=0.0, timeout=60.0,
                                   trip=f"consecutiveFailures >= {max_failures}")
    return ResolvedPolicies("default", "checkout", targets=(
        TargetPolicy(kind=TargetKind.APP, name="order-processor", circuit_breaker=breaker,
                     spec_namespace="default", spec_name="s"),
    ))


async def start(policies: ResolvedPolicies | None, resolver: StaticResolver,
                ready: bool = True) -> tuple[SidecarProxy, str]:
    agent = AsyncAgent(app_id="checkout", policies=policies)

    async def no_sleep(_: float) -> None:
        return None

    proxy = SidecarProxy(agent, resolver, "checkout", ready=lambda: ready,  # type: ignore[arg-type]
                         sleep=no_sleep)
    port = await proxy.start("127.0.0.1", 0)
    return proxy, f"http://127.0.0.1:{port}"


async def test_header_form_forwards_method_path_query_headers_and_body(upstream) -> None:
    address, seen = upstream
    proxy, base = await start(None, StaticResolver([address]))
    try:
        async with aiohttp.ClientSession() as http, http.put(
            f"{base}/orders/7?x=1&y=2", data=b"payload",
            headers={"dapr-app-id": "order-processor", "X-Trace": "t1", "Connection": "close"},
        ) as response:
            assert response.status == 201
            assert await response.read() == b"made"
            assert response.headers["X-Upstream"] == "1"
    finally:
        await proxy.stop()
    method, url, headers, body = seen.requests[0]
    assert (method, url, body) == ("PUT", "/orders/7?x=1&y=2", b"payload")
    assert headers["X-Trace"] == "t1"
    assert "dapr-app-id" not in {k.lower() for k in headers}
    assert headers["dapr-caller-app-id"] == "checkout"


async def test_invoke_url_form_reaches_the_method(upstream) -> None:
    address, seen = upstream
    proxy, base = await start(None, StaticResolver([address]))
    try:
        async with aiohttp.ClientSession() as http, http.delete(
            f"{base}/v1.0/invoke/order-processor/method/api/items?id=3"
        ) as response:
            assert response.status == 201
    finally:
        await proxy.stop()
    assert seen.requests[0][:2] == ("DELETE", "/api/items?id=3")


async def test_no_app_id_is_a_dapr_error() -> None:
    proxy, base = await start(None, StaticResolver([]))
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/orders") as response:
            assert response.status == 400
            assert (await response.json())["errorCode"] == "ERR_DIRECT_INVOKE"
    finally:
        await proxy.stop()


async def test_open_breaker_answers_500_without_reaching_the_target(upstream) -> None:
    address, seen = upstream
    proxy, base = await start(breaker_policies(), StaticResolver([address]))
    try:
        async with aiohttp.ClientSession() as http:
            headers = {"dapr-app-id": "order-processor"}
            async with http.post(f"{base}/fail", headers=headers) as first:
                assert first.status == 503  # the target's own answer, as is; trips the breaker
            async with http.post(f"{base}/fail", headers=headers) as second:
                assert second.status == 500
                assert await second.json() == {
                    "errorCode": "ERR_DIRECT_INVOKE",
                    "message": "failed to invoke, id: order-processor, "
                               "err: circuit breaker is open",
                }
    finally:
        await proxy.stop()
    assert len(seen.requests) == 1


async def test_builtin_retries_apply_without_a_target_policy(upstream) -> None:
    address, seen = upstream
    # The first address refuses connections; DaprBuiltInServiceRetries move on.
    resolver = StaticResolver(["127.0.0.1:1", address])
    proxy, base = await start(None, resolver)
    try:
        async with aiohttp.ClientSession() as http, http.post(
            f"{base}/orders", headers={"dapr-app-id": "order-processor"}
        ) as response:
            assert response.status == 201
    finally:
        await proxy.stop()
    assert resolver.turn == 2 and len(seen.requests) == 1


async def test_unknown_app_fails_after_builtin_retries() -> None:
    resolver = StaticResolver([])
    proxy, base = await start(None, resolver)
    try:
        async with aiohttp.ClientSession() as http, http.post(
            f"{base}/orders", headers={"dapr-app-id": "nobody"}
        ) as response:
            assert response.status == 500
            assert "couldn't find service: nobody" in (await response.json())["message"]
    finally:
        await proxy.stop()


@pytest.mark.parametrize(("ready", "status"), [(True, 204), (False, 500)])
async def test_healthz(ready: bool, status: int) -> None:
    proxy, base = await start(None, StaticResolver([]), ready=ready)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/v1.0/healthz") as response:
                assert response.status == status
            async with http.get(f"{base}/v1.0/healthz/outbound") as response:
                assert response.status == 204
    finally:
        await proxy.stop()


async def test_memory_registry_expires_leases_and_deregisters() -> None:
    now = [0.0]
    registry = MemoryInstanceRegistry(clock=lambda: now[0])
    await registry.register("default", "op", RegisteredInstance("a", "127.0.0.1:1"), ttl=10)
    await registry.register("default", "op", RegisteredInstance("b", "127.0.0.1:2"), ttl=20)
    assert [i.instance_id for i in await registry.resolve("default", "op")] == ["a", "b"]
    now[0] = 15.0
    assert [i.instance_id for i in await registry.resolve("default", "op")] == ["b"]
    assert await registry.deregister("default", "op", "b") is True
    assert await registry.resolve("default", "op") == []
    assert await registry.deregister("default", "op", "b") is False


