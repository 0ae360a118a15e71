"""The agent's Connect stream against a real in-process control plane."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest

from fusebox.agent._link import AsyncPolicyLink, LinkConfig, PolicyLink
from fusebox.agent._policy_source import PolicySource
from fusebox.agent.policy import ResolvedPolicies, TargetKind
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server.engines.sessions import AgentSession
from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.support.eventually import eventually_async
from tests.support.redis_server import free_port
from tests.support.specs import SEED_SPEC

DEADLINE = 15.0


class Received:
    """Collects what the link hands to the agent; optionally rejects snapshots."""

    def __init__(self, reject: Callable[[ResolvedPolicies], bool] = lambda _: False) -> None:
        self.policies: list[ResolvedPolicies] = []
        self.sources: list[PolicySource] = []
        self.reject = reject
        self._changed = threading.Condition()

    def __call__(self, policies: ResolvedPolicies, source: PolicySource) -> None:
        if self.reject(policies):
            raise ValueError("trip does not compile")
        with self._changed:
            self.policies.append(policies)
            self.sources.append(source)
            self._changed.notify_all()

    def current(self) -> ResolvedPolicies | None:
        return self.policies[-1] if self.policies else None

    async def wait_for(self, predicate: Callable[[ResolvedPolicies | None], bool]) -> None:
        await eventually_async(lambda: predicate(self.current()))




def app_targets(p: ResolvedPolicies | None) -> list[str]:
    if p is None:
        return []
    return [t.name for t in p.targets if t.kind is TargetKind.APP and not t.is_default]


def sessions(server: FuseboxServer) -> list[AgentSession]:
    return [s for group in server.hub._sessions.values() for s in group]


def start_config(port: int) -> ServerConfig:
    return ServerConfig(listen=f"127.0.0.1:{port}", store_url="memory://")


@pytest.fixture
async def server() -> AsyncIterator[FuseboxServer]:
    async with FuseboxServer(start_config(0)) as srv:
        yield srv


async def apply(server: FuseboxServer, text: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(spec_pb2.ApplySpecRequest(yaml=text))


def link_config(server_port: int, tmp_path: Path, app_id: str = "checkout",
                initial_fetch_timeout: float = DEADLINE) -> LinkConfig:
    """A fast-reconnecting link; give a short ``initial_fetch_timeout`` when no server answers."""
    return LinkConfig(
        target=f"127.0.0.1:{server_port}", app_id=app_id, instance_id=f"{app_id}-1",
        cache_path=tmp_path / "cache.pb", reconnect_initial=0.05, reconnect_max=0.2,
        initial_fetch_timeout=initial_fetch_timeout,
    )


async def test_agent_receives_snapshot_then_live_updates(
    server: FuseboxServer, tmp_path: Path
) -> None:
    received = Received()
    link = AsyncPolicyLink(link_config(server.port, tmp_path), received)
    await link.start()
    try:
        assert await link.wait_synced(DEADLINE)
        assert app_targets(received.current()) == []
        await apply(server, SEED_SPEC)
        await received.wait_for(lambda p: app_targets(p) == ["order-processor"])
        target = received.current().lookup(TargetKind.APP, "order-processor")  # type: ignore[union-attr]
        assert target is not None and target.circuit_breaker is not None
        assert target.circuit_breaker.trip == "consecutiveFailures >= 5"
        digest = received.current().digest  # type: ignore[union-attr]
        assert link.digest == digest
        # The server records the ACK for that digest.
        await eventually_async(lambda: any(s.acked_digest == digest for s in sessions(server)))
    finally:
        await link.aclose()


async def test_other_apps_get_no_update_for_a_spec_scoped_elsewhere(
    server: FuseboxServer, tmp_path: Path
) -> None:
    received = Received()
    link = AsyncPolicyLink(link_config(server.port, tmp_path, app_id="billing"), received)
    await link.start()
    try:
        assert await link.wait_synced(DEADLINE)
        first = len(received.policies)
        await apply(server, SEED_SPEC)  # scoped to checkout only
        await apply(server, SEED_SPEC.replace("name: myresiliency", "name: billing-too")
                    .replace("- checkout", "- billing"))
        await received.wait_for(lambda p: app_targets(p) == ["order-processor"])
        # One snapshot for billing's own spec, none for checkout's.
        assert len(received.policies) == first + 1
    finally:
        await link.aclose()


async def test_a_snapshot_the_agent_cannot_apply_is_nacked_and_old_policies_stay(
    server: FuseboxServer, tmp_path: Path
) -> None:
    received = Received(reject=lambda p: bool(app_targets(p)))
    link = AsyncPolicyLink(link_config(server.port, tmp_path), received)
    await link.start()
    try:
        assert await link.wait_synced(DEADLINE)
        empty_digest = link.digest
        await apply(server, SEED_SPEC)
        await eventually_async(lambda: any(s.sent_digest != empty_digest for s in sessions(server)))
        await asyncio.sleep(0.1)  # give a (wrong) ACK the chance to arrive
        assert link.digest == empty_digest
        assert app_targets(received.current()) == []
        assert [s.acked_digest for s in sessions(server)] == [empty_digest]
    finally:
        await link.aclose()


async def test_cached_policies_are_used_when_the_server_is_down(tmp_path: Path) -> None:
    port = free_port()
    async with FuseboxServer(start_config(port)) as srv:
        await apply(srv, SEED_SPEC)
        received = Received()
        link = AsyncPolicyLink(link_config(port, tmp_path), received)
        await link.start()
        await received.wait_for(lambda p: app_targets(p) == ["order-processor"])
        await link.aclose()
    # Server gone: a new agent starts from the disk cache once the initial fetch times out.
    restarted = Received()
    link = AsyncPolicyLink(link_config(port, tmp_path, initial_fetch_timeout=0.2), restarted)
    await link.start()
    try:
        assert app_targets(restarted.current()) == ["order-processor"]
        assert restarted.sources == [PolicySource.CACHE]
        assert link.ready and link.source is PolicySource.CACHE
        assert not link.connected
    finally:
        await link.aclose()


async def test_link_reconnects_and_resyncs_after_a_server_restart(tmp_path: Path) -> None:
    port = free_port()
    received = Received()
    link = AsyncPolicyLink(link_config(port, tmp_path, initial_fetch_timeout=0), received)
    await link.start()  # nothing listens yet: the link keeps retrying
    try:
        async with FuseboxServer(start_config(port)):
            assert await link.wait_synced(DEADLINE)
        async with FuseboxServer(start_config(port)) as second:
            await apply(second, SEED_SPEC)
            await received.wait_for(lambda p: app_targets(p) == ["order-processor"])
    finally:
        await link.aclose()


async def test_sync_link_runs_in_a_background_thread(
    server: FuseboxServer, tmp_path: Path
) -> None:
    received = Received()
    link = PolicyLink(link_config(server.port, tmp_path), received)
    # start() blocks until the first snapshot: not on the loop the server runs on.
    await asyncio.to_thread(link.start)
    try:
        assert await asyncio.to_thread(link.wait_synced, DEADLINE)
        await apply(server, SEED_SPEC)
        await received.wait_for(lambda p: app_targets(p) == ["order-processor"])
    finally:
        await asyncio.to_thread(link.close)
    assert not any(t.name == "fusebox-link" for t in threading.enumerate())


async def test_agent_starts_from_its_disk_cache_while_the_server_is_down(tmp_path: Path) -> None:
    from fusebox.agent import Agent, BreakerOpenError

    port = free_port()
    cache = tmp_path / "checkout.pb"
    async with FuseboxServer(start_config(port)) as srv:
        await apply(srv, SEED_SPEC.replace("maxInterval: 5s", "duration: 1ms"))
        first = Agent(app_id="checkout", server=f"127.0.0.1:{port}", cache_path=cache)
        await asyncio.to_thread(first.start)
        await eventually_async(lambda: app_targets(first.policies) == ["order-processor"])
        await asyncio.to_thread(first.close)
    # The control plane is gone; a restarted instance enforces the cached policies.
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("order-processor is down")

    with Agent(app_id="checkout", server=f"127.0.0.1:{port}", cache_path=cache,
               initial_fetch_timeout=0.2) as fb:
        assert app_targets(fb.policies) == ["order-processor"]
        assert fb.policy_source == "cache"
        with pytest.raises(BreakerOpenError):
            fb.app("order-processor", method="orders").call(down)
    assert calls == 5  # retryForever until simpleCB (consecutiveFailures >= 5) opened


def test_agent_without_server_or_cache_passes_calls_through_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from fusebox.agent import Agent

    with caplog.at_level("INFO"), Agent(
        app_id="checkout", server=f"127.0.0.1:{free_port()}", cache_path=tmp_path / "none.pb",
        initial_fetch_timeout=0,
    ) as fb:
        assert fb.policies is None
        results = [fb.app("order-processor", method="orders").call(lambda: "ok")
                   for _ in range(3)]
    assert results == ["ok", "ok", "ok"]
    notes = [r.getMessage() for r in caplog.records
             if "no resiliency policies" in r.getMessage().lower()]
    assert len(notes) == 1, notes


async def _session_turning_the_cancel_into_an_rpc_error() -> None:
    """What grpc.aio can do with a cancellation that lands inside one of its calls."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise grpc.aio.AioRpcError(grpc.StatusCode.CANCELLED, grpc.aio.Metadata(),
                                   grpc.aio.Metadata(), "Locally cancelled") from None


async def test_closing_stops_a_link_even_when_the_cancel_comes_back_as_an_rpc_error(
    tmp_path: Path,
) -> None:
    link = AsyncPolicyLink(link_config(free_port(), tmp_path, initial_fetch_timeout=0), Received())
    link._loop._session = _session_turning_the_cancel_into_an_rpc_error  # type: ignore[method-assign]
    await link.start()
    await asyncio.sleep(0.05)  # inside the session
    async with asyncio.timeout(DEADLINE):
        await link.aclose()


def test_closing_stops_a_sync_link_even_when_the_cancel_comes_back_as_an_rpc_error(
    tmp_path: Path,
) -> None:
    link = PolicyLink(link_config(free_port(), tmp_path, initial_fetch_timeout=0), Received())
    link._loop._session = _session_turning_the_cancel_into_an_rpc_error  # type: ignore[method-assign]
    link.start()
    link.close()
    assert not any(t.name == "fusebox-link" for t in threading.enumerate())
