"""Fixtures of the budget store tests."""

from __future__ import annotations

import pytest

from tests.support.redis_server import RedisServer


@pytest.fixture
def redis_server_for_properties(redis_server: RedisServer) -> RedisServer:
    """The session redis-server, running (hypothesis tests flush it per example)."""
    if not redis_server.running:
        redis_server.start()
    return redis_server
