"""An agent beside a policy cache another control plane wrote enforces its own server's
policies from its first call, with real `fusebox serve` processes.

Control plane A (its own data dir) serves a spec; an agent of checkout syncs it
and leaves A's policies in its disk cache. A stops; control plane B (another
data dir, so another control-plane id, other policies) starts on the *same*
address, so the cache even matches the configured server. An agent started
beside that cache must never enforce A's policies: its first call already runs
under B's, and the cache is overwritten with B's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
import pytest

from fusebox.agent import Agent, PolicySource
from fusebox.agent._link import _CACHE_WRITER, PolicyCache
from fusebox.v1 import agent_pb2, spec_pb2, spec_pb2_grpc
from tests.support.processes import ServerProcess
from tests.support.redis_server import free_port
from tests.support.specs import retry_spec

pytestmark = pytest.mark.e2e

DEADLINE = 30.0


def apply(address: str, text: str) -> None:
    with grpc.insecure_channel(address) as channel:
        spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=text), timeout=DEADLINE)


def attempts_of_one_failing_call(fb: Agent) -> int:
    attempts = 0

    def down() -> None:
        nonlocal attempts
        attempts += 1
        raise ConnectionError("order-processor is down")

    with pytest.raises(ConnectionError):
        fb.app("order-processor", method="orders").call(down)
    return attempts


def cached(path: Path, server: str) -> agent_pb2.CachedPolicies:
    """The cache file once every save queued in this process has landed."""
    cache = PolicyCache(path, server=server, namespace="default", app_id="checkout")
    loaded = _CACHE_WRITER.submit(cache.load).result(timeout=DEADLINE)
    assert loaded is not None
    return loaded


def test_an_agent_beside_a_cache_of_another_control_plane_enforces_its_servers_policies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox.agent")
    port = free_port()
    address = f"127.0.0.1:{port}"
    cache = tmp_path / "checkout.cache.pb"

    a = ServerProcess(tmp_path / "a", port=port)
    (tmp_path / "a").mkdir()
    with a:
        apply(address, retry_spec(5))  # A: 6 attempts per call
        with Agent(app_id="checkout", server=address, cache_path=cache,
                   initial_fetch_timeout=DEADLINE) as fb:
            assert attempts_of_one_failing_call(fb) == 6
    written_by_a = cached(cache, address)
    assert written_by_a.control_plane_id

    b = ServerProcess(tmp_path / "b", port=port)
    (tmp_path / "b").mkdir()
    with b:
        apply(address, retry_spec(1))  # B: 2 attempts per call
        caplog.clear()
        with Agent(app_id="checkout", server=address, cache_path=cache,
                   initial_fetch_timeout=DEADLINE) as fb:
            assert fb.ready and fb.policy_source is PolicySource.SERVER
            assert attempts_of_one_failing_call(fb) == 2  # B's policies, from the first call
            written_by_b = cached(cache, address)  # overwritten at once, not at close
    assert written_by_b.control_plane_id not in ("", written_by_a.control_plane_id)
    assert written_by_b.policies.digest != written_by_a.policies.digest
    text = caplog.text
    assert f"policies from control plane {address} applied" in text
    assert (f"discarding the cached policies written by control plane "
            f"{written_by_a.control_plane_id}") in text
    assert "enforcing cached policies" not in text
