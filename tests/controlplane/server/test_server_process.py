"""`fusebox serve` as a real process: restarts, store outages, signals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.support.processes import ServerProcess, wait_for_health
from tests.support.redis_server import RedisServer
from tests.support.specs import SEED_SPEC

pytestmark = pytest.mark.e2e
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def spec_client(address: str) -> tuple[grpc.Channel, spec_pb2_grpc.SpecServiceStub]:
    channel = grpc.insecure_channel(address)
    return channel, spec_pb2_grpc.SpecServiceStub(channel)


@pytest.fixture(params=["embedded", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    if request.param == "embedded":
        yield None  # the default: SQLite under --data-dir
        return
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    yield redis.url
    redis.stop()


def test_specs_survive_a_server_restart(tmp_path: Path, store_url: str | None) -> None:
    server = ServerProcess(tmp_path, store_url=store_url)
    server.start()
    channel, specs = spec_client(server.address)
    with channel:
        specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC))
        specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC.replace("5s", "7s")))
    assert server.stop() == 0  # SIGTERM is a clean shutdown

    server.start()
    channel, specs = spec_client(server.address)
    with channel:
        spec = specs.GetSpec(spec_pb2.GetSpecRequest(name="myresiliency"), timeout=10).spec
        history = specs.ListSpecRevisions(
            spec_pb2.ListSpecRevisionsRequest(name="myresiliency"), timeout=10
        )
        # Revisions keep counting after the restart.
        again = specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC), timeout=10)
    server.stop()
    assert spec.revision == 2 and "7s" in spec.yaml
    assert [r.revision for r in history.revisions] == [1, 2]
    assert again.specs[0].revision == 3


def test_health_follows_redis_and_nothing_is_lost(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        with ServerProcess(tmp_path, store_url=redis.url) as server:
            channel, specs = spec_client(server.address)
            with channel:
                specs.ApplySpec(spec_pb2.ApplySpecRequest(yaml=SEED_SPEC), timeout=10)
                redis.stop()
                wait_for_health(server.address, NOT_SERVING, deadline=30)
                with pytest.raises(grpc.RpcError) as info:
                    specs.ListSpecs(spec_pb2.ListSpecsRequest(), timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                redis.start()
                wait_for_health(server.address, SERVING, deadline=30)
                listed = specs.ListSpecs(spec_pb2.ListSpecsRequest(), timeout=10)
                assert [(s.name, s.revision) for s in listed.specs] == [("myresiliency", 1)]
    finally:
        redis.stop()


def test_server_starts_not_serving_when_redis_is_down_and_recovers(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")  # not started yet
    server = ServerProcess(tmp_path, store_url=redis.url)
    server.start(wait=False)
    try:
        wait_for_health(server.address, NOT_SERVING, deadline=60, process=server.process,
                        log=server.log)
        redis.start()
        wait_for_health(server.address, SERVING, deadline=30)
    finally:
        server.stop()
        redis.stop()
