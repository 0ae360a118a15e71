"""Fixtures of the Redis Cluster and Sentinel tests: real processes on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_cluster import RedisClusterProcesses
from tests.support.redis_sentinel import RedisSentinelSetup


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterProcesses]:
    """One 3-master Redis Cluster for the whole session, stopped at the end."""
    cluster = RedisClusterProcesses(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterProcesses) -> str:
    """The session cluster's URL, every master flushed first."""
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[RedisSentinelSetup]:
    """A private master, two replicas and a sentinel a test may fail over (two replicas:
    one is left to acknowledge writes once the other has been promoted)."""
    setup = RedisSentinelSetup(tmp_path / "sentinel", replicas=2)
    setup.start()
    yield setup
    setup.stop()
