"""Ready before guarding: an agent waits (bounded) for its first snapshot; the disk
cache is a fallback for a server that does not answer, never for one that does,
and never one written for another server or app.

A real in-process control plane on loopback where a server is needed; "down"
is a free port nothing listens on.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from fusebox.agent import Agent, AsyncAgent, PolicySource, testing
from fusebox.agent._link import _CACHE_WRITER, PolicyCache
from fusebox.agent.policy import (
    BackoffKind,
    ResolvedPolicies,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
    resolved_to_proto,
)
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import agent_pb2, spec_pb2, spec_pb2_grpc
from tests.support.eventually import eventually_async
from tests.support.redis_server import free_port
from tests.support.specs import retry_spec

DEADLINE = 10.0
SHORT = 0.3  # the initial fetch timeout of tests whose server does not answer
MODES = ["sync", "async"]


def retry_policies(max_retries: int, app_id: str = "checkout") -> ResolvedPolicies:
    """What ``retry_spec(max_retries)`` resolves to, for writing cache files by hand."""
    retry = RetryPolicy("quick", BackoffKind.CONSTANT, duration=0.001, max_retries=max_retries)
    return ResolvedPolicies("default", app_id, (
        TargetPolicy(TargetKind.APP, "order-processor", retry=retry,
                     spec_namespace="default", spec_name="resiliency"),
    ))


def write_cache(path: Path, *, server: str, control_plane_id: str = "cp-old",
                max_retries: int = 4, app_id: str = "checkout") -> None:
    cache = PolicyCache(path, server=server, namespace="default", app_id=app_id)
    cache.save(resolved_to_proto(retry_policies(max_retries, app_id)), control_plane_id)


def on_disk(path: Path, server: str) -> agent_pb2.CachedPolicies | None:
    """The cache file once the saves queued so far have landed (the writer is FIFO)."""
    cache = PolicyCache(path, server=server, namespace="default", app_id="checkout")
    return _CACHE_WRITER.submit(cache.load).result(timeout=DEADLINE)


async def apply(server: FuseboxServer, text: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(spec_pb2.ApplySpecRequest(yaml=text))


@pytest.fixture
async def server() -> AsyncIterator[FuseboxServer]:
    """A control plane whose spec makes order-processor calls 3 attempts (2 retries)."""
    async with FuseboxServer(ServerConfig(listen="127.0.0.1:0", store_url="memory://")) as srv:
        await apply(srv, retry_spec(2))
        yield srv


def address(server: FuseboxServer) -> str:
    return f"127.0.0.1:{server.port}"




class Driver:
    """A sync Agent or an AsyncAgent behind one awaitable interface.

    The sync agent's blocking calls run in a thread: the in-process server
    shares the test's event loop.
    """

    def __init__(self, mode: str, server: str, tmp_path: Path, **kwargs: Any) -> None:
        kwargs.setdefault("cache_path", tmp_path / "cache.pb")
        self.fb: Agent | AsyncAgent = (Agent if mode == "sync" else AsyncAgent)(
            app_id="checkout", server=server, instance_id="checkout-1", **kwargs)
        self.attempts = 0
        self.start_seconds = 0.0

    async def start(self) -> Driver:
        started = time.monotonic()
        if isinstance(self.fb, Agent):
            await asyncio.to_thread(self.fb.start)
        else:
            await self.fb.start()
        self.start_seconds = time.monotonic() - started
        return self

    async def close(self) -> None:
        if isinstance(self.fb, Agent):
            await asyncio.to_thread(self.fb.close)
        else:
            await self.fb.aclose()

    async def wait_ready(self, timeout: float | None) -> bool:
        if isinstance(self.fb, Agent):
            return await asyncio.to_thread(self.fb.wait_ready, timeout)
        return await self.fb.wait_ready(timeout)

    async def attempts_of_one_failing_call(self) -> int:
        """How many times one call to a dead order-processor ran the operation."""
        before = self.attempts

        def down() -> None:
            self.attempts += 1
            raise ConnectionError("order-processor is down")

        async def adown() -> None:
            down()

        with pytest.raises(ConnectionError):
            if isinstance(self.fb, Agent):
                await asyncio.to_thread(self.fb.app("order-processor", method="orders").call,
                                        down)
            else:
                await self.fb.app("order-processor", method="orders").call(adown)
        return self.attempts - before


def messages(caplog: pytest.LogCaptureFixture, contains: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if contains in r.getMessage()]


# -- a server that answers -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_first_call_after_start_is_guarded_by_the_servers_policies(
    mode: str, server: FuseboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox.agent")
    d = await Driver(mode, address(server), tmp_path, initial_fetch_timeout=DEADLINE).start()
    try:
        assert d.fb.ready and d.fb.policy_source is PolicySource.SERVER
        assert await d.attempts_of_one_failing_call() == 3  # retried twice: guarded
        assert d.fb.stats()["order-processor:orders"].retries == 2
    finally:
        await d.close()
    [applied] = messages(caplog, "policies from control plane")
    assert applied.startswith(f"policies from control plane {address(server)} applied (digest ")
    assert applied.endswith(", 1 targets)")
    assert not messages(caplog, "No resiliency policies")
    assert not messages(caplog, "cached policies")


@pytest.mark.parametrize("mode", MODES)
async def test_a_cache_another_control_plane_wrote_for_the_same_address_is_never_enforced(
    mode: str, server: FuseboxServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox.agent")
    cache = tmp_path / "cache.pb"
    write_cache(cache, server=address(server), control_plane_id="cp-old", max_retries=5)
    d = await Driver(mode, address(server), tmp_path, initial_fetch_timeout=DEADLINE).start()
    try:
        assert d.fb.policy_source is PolicySource.SERVER
        assert await d.attempts_of_one_failing_call() == 3  # not the cache's 6
        # Overwritten at once, not after the settle time: it names the server's control plane.
        own_id = await server.store.control_plane_id()

        def rewritten() -> bool:  # by the cache writer thread, in the background
            loaded = on_disk(cache, address(server))
            return loaded is not None and loaded.control_plane_id == own_id

        await eventually_async(rewritten)
    finally:
        await d.close()
    [discarded] = messages(caplog, "discarding the cached policies")
    assert f"written by control plane cp-old (server {address(server)}" in discarded
    assert f"control plane {own_id} answered" in discarded


async def test_snapshots_carry_the_stores_control_plane_id_into_the_cache(
    server: FuseboxServer, tmp_path: Path
) -> None:
    d = await Driver("async", address(server), tmp_path).start()
    await d.close()  # closing writes the cache at once
    loaded = on_disk(tmp_path / "cache.pb", address(server))
    assert loaded is not None
    assert loaded.control_plane_id == await server.store.control_plane_id() != ""
    assert (loaded.server, loaded.namespace, loaded.app_id) == (
        address(server), "default", "checkout")
    assert loaded.policies.digest and loaded.written_at.seconds > 0


# -- a server that does not answer -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_with_the_server_down_start_waits_the_timeout_then_enforces_the_matching_cache(
    mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox.agent")
    down = f"127.0.0.1:{free_port()}"
    write_cache(tmp_path / "cache.pb", server=down, control_plane_id="cp-1", max_retries=4)
    d = await Driver(mode, down, tmp_path, initial_fetch_timeout=SHORT).start()
    try:
        assert SHORT <= d.start_seconds < 3.0  # the timeout given, not the default
        assert d.fb.ready and d.fb.policy_source is PolicySource.CACHE
        assert await d.attempts_of_one_failing_call() == 5
    finally:
        await d.close()
    [line] = messages(caplog, "did not answer")
    assert line.startswith(f"control plane {down} did not answer within 0.3s (UNAVAILABLE); "
                           "enforcing cached policies written by control plane cp-1 at 20")
    assert line.endswith(", 1 targets)")
    assert not messages(caplog, "unreachable")  # that line says it all


CACHES: dict[str, Callable[[Path, str], None]] = {
    "none": lambda path, server: None,
    "another server": lambda path, server: write_cache(path, server="127.0.0.1:1"),
    "another app": lambda path, server: write_cache(path, server=server, app_id="billing"),
    "former format": lambda path, server: path.write_bytes(
        resolved_to_proto(retry_policies(4)).SerializeToString()),
    "corrupt": lambda path, server: path.write_bytes(b"\xff\xff\xff"),
}
REASONS = {
    "none": "(none)",
    "another server": "(written for another control plane/server 127.0.0.1:1)",
    "another app": "(written for app billing in namespace default)",
    "former format": "is not a policy cache of this agent's format (corrupt, or older)",
    "corrupt": "is not a policy cache of this agent's format (corrupt, or older)",
}


@pytest.mark.parametrize("cache", list(CACHES))
async def test_with_the_server_down_no_foreign_or_unreadable_cache_is_applied(
    cache: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox.agent")
    down = f"127.0.0.1:{free_port()}"
    CACHES[cache](tmp_path / "cache.pb", down)
    d = await Driver("sync", down, tmp_path, initial_fetch_timeout=SHORT).start()
    try:
        assert d.fb.ready and d.fb.policy_source is PolicySource.NONE
        assert d.fb.policies is None
        assert await d.attempts_of_one_failing_call() == 1  # passed through
    finally:
        await d.close()
    [line] = messages(caplog, "did not answer")
    assert line.startswith(f"control plane {down} did not answer within 0.3s (UNAVAILABLE); "
                           "no usable cached policies (")
    assert REASONS[cache] in line
    assert line.endswith("; calls pass through unguarded until the control plane answers")
    [passing] = messages(caplog, "No resiliency policies")
    assert passing == (f"No resiliency policies for app checkout (no policies from control "
                       f"plane {down} yet and no usable cached policies): calls pass through "
                       "unguarded")


@pytest.mark.parametrize("mode", MODES)
async def test_without_an_initial_wait_start_returns_at_once_with_the_matching_cache(
    mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox.agent")
    down = f"127.0.0.1:{free_port()}"
    write_cache(tmp_path / "cache.pb", server=down, control_plane_id="cp-1", max_retries=1)
    d = await Driver(mode, down, tmp_path, initial_fetch_timeout=0).start()
    try:
        assert d.start_seconds < 1.0
        assert d.fb.ready and d.fb.policy_source is PolicySource.CACHE
        assert await d.attempts_of_one_failing_call() == 2
    finally:
        await d.close()
    [line] = messages(caplog, "not waited for")
    # The connection may or may not have failed yet when the cache was read.
    assert re.match(rf"control plane {re.escape(down)} not waited for "
                    r"\(initial_fetch_timeout=0\)( \(UNAVAILABLE\))?; enforcing cached policies "
                    "written by control plane cp-1 at ", line), line


async def test_without_an_initial_wait_the_snapshot_replaces_the_cache_when_it_comes(
    tmp_path: Path,
) -> None:
    port = free_port()
    write_cache(tmp_path / "cache.pb", server=f"127.0.0.1:{port}", max_retries=5)
    d = await Driver("async", f"127.0.0.1:{port}", tmp_path, initial_fetch_timeout=0).start()
    try:
        assert d.fb.policy_source is PolicySource.CACHE  # nothing listens yet
        assert await d.attempts_of_one_failing_call() == 6
        async with FuseboxServer(ServerConfig(listen=f"127.0.0.1:{port}",
                                              store_url="memory://")) as srv:
            await apply(srv, retry_spec(2))
            # The agent may connect before the spec is applied: an empty snapshot first.
            await eventually_async(lambda: d.fb.policy_source is PolicySource.SERVER
                             and d.fb.policies is not None and bool(d.fb.policies.targets))
            assert await d.attempts_of_one_failing_call() == 3
    finally:
        await d.close()


def test_a_negative_initial_fetch_timeout_is_refused() -> None:
    with pytest.raises(ValueError, match="initial_fetch_timeout must be >= 0"):
        Agent(app_id="checkout", server="127.0.0.1:1", initial_fetch_timeout=-1)


# -- readiness ----------------------------------------------------------------------------


async def test_an_agent_without_a_server_is_ready_at_once() -> None:
    static = Agent(app_id="checkout", policies=retry_policies(1))
    bare = AsyncAgent(app_id="checkout")
    assert static.ready and static.wait_ready(0)
    assert static.policy_source is PolicySource.STATIC and static.policy_source == "static"
    assert bare.ready and await bare.wait_ready(0)
    assert bare.policy_source is PolicySource.NONE
    with testing.testing(), Agent(app_id="checkout", server="127.0.0.1:1") as tested:
        assert tested.ready and tested.wait_ready(0)  # testing mode: no server link
    static.close()
    await bare.aclose()


@pytest.mark.parametrize("mode", MODES)
async def test_wait_ready_waits_for_the_first_snapshot_then_an_outage_leaves_it_ready(
    mode: str, tmp_path: Path
) -> None:
    port = free_port()
    d = Driver(mode, f"127.0.0.1:{port}", tmp_path, initial_fetch_timeout=DEADLINE)
    assert not d.fb.ready and not await d.wait_ready(0)  # not started yet
    async with FuseboxServer(ServerConfig(listen=f"127.0.0.1:{port}",
                                          store_url="memory://")) as srv:
        await apply(srv, retry_spec(2))
        starting = asyncio.create_task(d.start())
        assert await d.wait_ready(DEADLINE)  # while start() is still under way elsewhere
        await starting
        assert d.fb.ready and d.fb.policy_source is PolicySource.SERVER
    # The control plane is gone: the agent keeps its policies and stays ready.
    await eventually_async(lambda: not d.fb._link.connected)
    assert d.fb.ready and await d.wait_ready(0)
    assert d.fb.policy_source is PolicySource.SERVER
    assert await d.attempts_of_one_failing_call() == 3
    await d.close()
    assert not d.fb.ready


async def test_the_pass_through_line_of_an_agent_used_before_start_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox.agent")
    fb = Agent(app_id="checkout", server="127.0.0.1:1", cache_path=tmp_path / "cache.pb")
    assert fb.app("order-processor").call(lambda: "ok") == "ok"
    fb.close()
    [line] = messages(caplog, "No resiliency policies")
    assert "(the agent is not started)" in line


async def test_waiting_on_an_agent_never_started_says_so(caplog: pytest.LogCaptureFixture) -> None:
    sync = Agent(app_id="checkout", server="127.0.0.1:1")
    aio = AsyncAgent(app_id="checkout", server="127.0.0.1:1")
    with caplog.at_level("WARNING", logger="fusebox.agent"):
        assert not sync.wait_ready(0)
        assert not await aio.wait_ready(0)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("Agent.wait_ready() on an agent that is not started" in w
               and "with Agent(...) as fb" in w for w in warnings), warnings
    assert any("AsyncAgent.wait_ready()" in w and "async with AsyncAgent(...) as fb" in w
               for w in warnings), warnings
