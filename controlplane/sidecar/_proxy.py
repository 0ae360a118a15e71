"""The sidecar's HTTP door: Dapr's service-invocation API, guarded by the agent.

Two URL forms reach another app, as in Dapr::

    POST http://localhost:3500/orders                    dapr-app-id: order-processor
    POST http://localhost:3500/v1.0/invoke/order-processor/method/orders

Method, path, query, headers (hop-by-hop ones removed) and body go to an
instance of the target app; its response comes back as is. Each attempt runs
through the agent (``fb.app(target, method=path)``), so the caller's resolved
``apps.<target>`` policies apply: timeout, retries with ``matching``, the
cluster-wide breaker ``target:method``. A target without a retry policy gets
Dapr's ``DaprBuiltInServiceRetries`` (transport failures only). Errors the
sidecar itself answers use Dapr's body: ``{"errorCode": ..., "message": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from fusebox.agent import AsyncAgent, BreakerOpenError, PolicyTimeoutError
from fusebox.agent.classify import FAILURE, Outcome, http_outcome
from fusebox.agent.policy import RetryPolicy, TargetKind
from fusebox.controlplane.sidecar._discovery import AppNotFound, AppResolver

log = logging.getLogger("fusebox.sidecar")

APP_ID_HEADER = "dapr-app-id"
INVOKE_PREFIX = "/v1.0/invoke/"
HEALTHZ = "/v1.0/healthz"
HEALTHZ_OUTBOUND = "/v1.0/healthz/outbound"
BUILTIN_SERVICE_RETRIES = "DaprBuiltInServiceRetries"
# RFC 9110 section 7.6.1, plus what the proxy sets itself (host, length).
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length",
})
# Dapr's built-in service retries when the resolved policies carry none.
FALLBACK_BUILTIN = RetryPolicy(name=BUILTIN_SERVICE_RETRIES, duration=1.0, max_retries=3)

Sleep = Callable[[float], Awaitable[None]]


class UpstreamUnreachable(Exception):
    """No instance of the target could be reached (no address, connection refused)."""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    """The target app's answer, read whole so a retry can decide on it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Invocation:
    """One call the local app asked for."""

    target: str
    method_path: str  # without the leading slash: "orders", "api/v1/items"
    http_method: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


def dapr_error(status: int, code: str, message: str) -> web.Response:
    """An error response in Dapr's shape."""
    return web.json_response({"errorCode": code, "message": message}, status=status)


def forwarded_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``headers`` without hop-by-hop ones and without those named in ``Connection``."""
    pairs = list(headers)
    named = {
        token.strip().lower()
        for name, value in pairs if name.lower() == "connection"
        for token in value.split(",")
    }
    return tuple((n, v) for n, v in pairs if n.lower() not in HOP_BY_HOP | named)


def parse_invocation(request: web.Request, body: bytes) -> Invocation | None:
    """The target and method of a request, or None when it names no app."""
    path = request.rel_url.raw_path
    if path.startswith(INVOKE_PREFIX):
        target, separator, rest = path[len(INVOKE_PREFIX):].partition("/method/")
        if not separator or not target:
            return None
        method_path = rest
    else:
        target = request.headers.get(APP_ID_HEADER, "")
        method_path = path.lstrip("/")
        if not target:
            return None
    headers = forwarded_headers(
        (k, v) for k, v in request.headers.items() if k.lower() != APP_ID_HEADER
    )
    return Invocation(target=target, method_path=method_path, http_method=request.method,
                      query=request.rel_url.raw_query_string, headers=headers, body=body)


def _classify(result: Any, error: BaseException | None) -> Outcome:
    if error is not None or not isinstance(result, UpstreamResponse):
        return FAILURE
    return http_outcome(result.status)


class SidecarProxy:
    """The aiohttp application of one sidecar.

    ``ready`` (a callable) says whether the app side is up; the agent's
    policies and the resolver serve outbound calls. ``sleep`` is injectable so
    tests of the built-in retries need not wait.
    """

    def __init__(self, agent: AsyncAgent, resolver: AppResolver, app_id: str, *,
                 ready: Callable[[], bool] = lambda: True,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._agent = agent
        self._resolver = resolver
        self._app_id = app_id
        self._ready = ready
        self._sleep = sleep
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("GET", HEALTHZ, self._healthz)
        app.router.add_route("GET", HEALTHZ_OUTBOUND, self._healthz_outbound)
        app.router.add_route("*", "/{tail:.*}", self._invoke)
        return app

    async def start(self, host: str, port: int) -> int:
        """Serve on ``host:port`` (0: a free port); returns the bound port."""
        # As is: no decompression, so bodies and Content-Encoding pass through untouched.
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0)
        )
        self._runner = web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- health -------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(status=204 if self._ready() else 500)

    async def _healthz_outbound(self, request: web.Request) -> web.Response:
        # Outbound calls need only the proxy and the agent, not our own app.
        return web.Response(status=204 if self._session is not None else 500)

    # -- invocation -----------------------------------------------------------------

    async def _invoke(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        invocation = parse_invocation(request, body)
        if invocation is None:
            return dapr_error(400, "ERR_DIRECT_INVOKE",
                              "failed getting app id either from the URL path or the header "
                              f"{APP_ID_HEADER}")
        try:
            upstream = await self.call(invocation)
        except BreakerOpenError as e:
            return self._failed(invocation, str(e).split(":", 1)[0])
        except PolicyTimeoutError as e:
            return self._failed(invocation, f"context deadline exceeded ({e})")
        except (UpstreamUnreachable, AppNotFound) as e:
            return self._failed(invocation, str(e))
        headers = forwarded_headers(upstream.headers)
        response = web.Response(status=upstream.status, body=upstream.body)
        for name, value in headers:
            response.headers.add(name, value)
        return response

    def _failed(self, invocation: Invocation, why: str) -> web.Response:
        message = f"failed to invoke, id: {invocation.target}, err: {why}"
        log.info("%s (method %s)", message, invocation.method_path)
        return dapr_error(500, "ERR_DIRECT_INVOKE", message)

    async def call(self, invocation: Invocation) -> UpstreamResponse:
        """Run ``invocation`` under the policies; raises what the agent raises."""
        target = self._agent.app(invocation.target, method=invocation.method_path,
                                 classifier=_classify)
        builtin = self._builtin_retry(invocation.target)
        attempt = 0
        while True:
            try:
                result: UpstreamResponse = await target.call(self._attempt, invocation)
                return result
            except UpstreamUnreachable:
                if builtin is None or (0 <= builtin.max_retries <= attempt):
                    raise
            attempt += 1
            await self._sleep(builtin.duration)

    def _builtin_retry(self, target: str) -> RetryPolicy | None:
        """Dapr's built-in service retries when the target has no retry policy of its own."""
        policies = self._agent.policies
        if policies is None:
            return FALLBACK_BUILTIN
        found = policies.lookup(TargetKind.APP, target)
        if found is not None and found.retry is not None:
            return None
        return policies.builtin_retries.get(BUILTIN_SERVICE_RETRIES, FALLBACK_BUILTIN)

    async def _attempt(self, invocation: Invocation) -> UpstreamResponse:
        assert self._session is not None
        # Resolved per attempt: a retry goes to the next instance, round-robin.
        address = await self._resolver.next_address(invocation.target)
        url = f"http://{address}/{invocation.method_path}"
        if invocation.query:
            url += f"?{invocation.query}"
        headers = [*invocation.headers, ("dapr-caller-app-id", self._app_id),
                   ("dapr-callee-app-id", invocation.target)]
        try:
            async with self._session.request(
                invocation.http_method, url, headers=CIMultiDict(headers), data=invocation.body,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return UpstreamResponse(response.status, tuple(response.headers.items()), body)
        except aiohttp.ClientConnectionError as e:
            self._resolver.forget(invocation.target)
            raise UpstreamUnreachable(f"cannot reach {invocation.target} at {address}: {e}") from e

