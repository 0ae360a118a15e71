"""The server's HTTP port: /metrics, /healthz, /readyz, and nothing else.

An in-process server with ``http_listen``; requests are real HTTP from a
thread (the server's event loop keeps running, or is blocked on purpose).
The flip of /readyz with a real Redis stopped and restarted is in
tests/e2e/test_http_probes.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server import app as server_app
from fusebox.controlplane.server.http_endpoints import split_listen
from fusebox.controlplane.store_errors import StoreUnavailable
from tests.support.eventually import eventually_async


def get(port: int, path: str, method: str = "GET", timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
async def server() -> AsyncIterator[FuseboxServer]:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://",
                          http_listen="127.0.0.1:0", health_interval=0.05)
    async with FuseboxServer(config) as srv:
        yield srv


async def fetch(server: FuseboxServer, path: str, method: str = "GET") -> tuple[int, str]:
    return await asyncio.to_thread(get, server.http_port, path, method)


async def test_a_serving_server_is_alive_ready_and_serves_its_metrics(
    server: FuseboxServer,
) -> None:
    assert await fetch(server, "/healthz") == (200, "ok\n")
    assert await fetch(server, "/readyz") == (200, "ready\n")
    status, text = await fetch(server, "/metrics")
    assert status == 200 and "fusebox_connected_agents 0.0" in text


@pytest.mark.parametrize("path", ["/", "/metrics/", "/healthz/x", "/favicon.ico", "/ready"])
async def test_other_paths_are_not_found(server: FuseboxServer, path: str) -> None:
    status, text = await fetch(server, path)
    assert status == 404 and "/metrics, /healthz and /readyz" in text


async def test_probes_answer_get_and_head_only(server: FuseboxServer) -> None:
    assert await fetch(server, "/readyz", "HEAD") == (200, "")
    status, text = await fetch(server, "/healthz", "POST")
    assert status == 405 and "GET or HEAD" in text


async def test_readyz_says_which_store_is_unreachable_until_it_answers_again(
    server: FuseboxServer,
) -> None:
    async def down() -> None:
        raise StoreUnavailable("connection refused")

    answers = server.store.ping
    server.store.ping = down  # type: ignore[method-assign]
    await eventually_async(lambda: server._store_problem != "", what="the store seen down")
    status, text = await fetch(server, "/readyz")
    assert (status, text) == (503, "spec store unavailable: connection refused\n")
    assert await fetch(server, "/healthz") == (200, "ok\n")  # alive all along
    server.store.ping = answers  # type: ignore[method-assign]
    await eventually_async(lambda: server._store_problem == "", what="the store back")
    assert await fetch(server, "/readyz") == (200, "ready\n")


async def test_healthz_fails_while_the_event_loop_is_stuck(server: FuseboxServer) -> None:
    # The port is served by the event loop itself: a stuck loop answers no probe,
    # and a liveness probe that times out is a failed one.
    answers: list[tuple[int, str] | str] = []

    def probe() -> None:
        try:
            answers.append(get(server.http_port, "/healthz", timeout=0.3))
        except OSError as e:  # the timeout
            answers.append(type(e).__name__)

    asker = threading.Thread(target=probe)
    asker.start()
    time.sleep(0.8)  # noqa: ASYNC251 - blocks the server's event loop on purpose
    asker.join()
    assert answers == ["TimeoutError"]
    assert await fetch(server, "/healthz") == (200, "ok\n")  # alive again once the loop turns


async def test_healthz_fails_when_the_loop_turns_without_its_heartbeat(
    server: FuseboxServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_app, "LIVENESS_STALL_SECONDS", 0.0)
    server._heartbeat -= 1.0  # as if the heartbeat task had not run for a second
    status, text = await fetch(server, "/healthz")
    assert status == 503 and text.startswith("event loop stalled")


async def test_readyz_turns_unready_as_the_server_shuts_down() -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://",
                          http_listen="127.0.0.1:0")
    server = FuseboxServer(config)
    await server.start()
    port = server.http_port
    assert (await asyncio.to_thread(get, port, "/readyz"))[0] == 200
    closing = asyncio.Event()
    release = asyncio.Event()
    close = server.instance_registry.close

    async def slow_close() -> None:  # holds the shutdown where the probes must answer
        closing.set()
        await release.wait()
        await close()

    server.instance_registry.close = slow_close  # type: ignore[method-assign]
    stopping = asyncio.create_task(server.stop())
    await asyncio.wait_for(closing.wait(), 10)
    assert await asyncio.to_thread(get, port, "/readyz") == (503, "shutting down\n")
    assert await asyncio.to_thread(get, port, "/healthz") == (200, "ok\n")
    release.set()
    await stopping
    with pytest.raises(OSError):
        get(port, "/healthz")  # the port is closed with the server


@pytest.mark.parametrize(("listen", "expected"), [
    ("127.0.0.1:9090", ("127.0.0.1", 9090)),
    ("0.0.0.0:9090", ("0.0.0.0", 9090)),
    ("[::1]:9090", ("::1", 9090)),
    (":9090", ("127.0.0.1", 9090)),
])
def test_listen_addresses(listen: str, expected: tuple[str, int]) -> None:
    assert split_listen(listen) == expected


def test_a_listen_address_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_listen("localhost")
