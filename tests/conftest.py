"""Fixtures shared by the whole suite."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# `tests.support` must import the same way under `pytest` and `python -m pytest`
# (only the latter puts the working directory on sys.path).
_REPOSITORY = str(Path(__file__).resolve().parent.parent)
if _REPOSITORY not in sys.path:
    sys.path.insert(0, _REPOSITORY)

from tests.support.redis_server import RedisServer  # noqa: E402


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session (AOF on), stopped at the end."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, with every database flushed first."""
    if not redis_server.running:  # a test stopped it; bring it back for the next ones
        redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, started redis-server a test may stop, kill or restart."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


#: Fixtures that start processes (a redis-server, a cluster, a Sentinel setup): a test
#: using one, directly or through a "redis" parameter, is an end-to-end test.
PROCESS_FIXTURES = frozenset({"redis_server", "fresh_redis", "redis_cluster", "redis_sentinel"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test that starts processes through a fixture (the tests that
    start them themselves, a server, an agent or the CLI, say so in their module)."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = list(callspec.params.values()) if callspec is not None else []
        if fixtures & PROCESS_FIXTURES or "redis" in params:
            item.add_marker(pytest.mark.e2e)
