"""The redis-server fixture other test packages rely on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.support import RedisServer, free_port


def test_free_port_is_bindable_on_loopback() -> None:
    port = free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_redis_url_gives_an_empty_database(redis_server: RedisServer, redis_url: str) -> None:
    redis_server.command("SET", "left-over", "x")
    assert redis_server.command("DBSIZE") == "1"
    redis_server.flushall()
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.command("DBSIZE") == "0"


def test_restart_keeps_port_and_data(fresh_redis: RedisServer) -> None:
    port = fresh_redis.port
    fresh_redis.command("SET", "kept", "yes")
    fresh_redis.restart()
    assert fresh_redis.port == port
    assert fresh_redis.command("EXISTS", "kept") == "1"


def test_kill_then_start_keeps_acknowledged_writes(fresh_redis: RedisServer) -> None:
    fresh_redis.command("SET", "kept", "yes")
    fresh_redis.kill()
    assert not fresh_redis.running
    with pytest.raises(OSError):
        fresh_redis.command("PING")
    fresh_redis.start()
    assert fresh_redis.command("EXISTS", "kept") == "1"


def test_without_appendonly_a_restart_forgets(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=False)
    server.start()
    try:
        server.command("SET", "gone", "soon")
        server.restart()
        assert server.command("EXISTS", "gone") == "0"
    finally:
        server.stop()


def test_start_reports_a_server_that_cannot_start(tmp_path: Path) -> None:
    first = RedisServer(tmp_path / "one")
    first.start()
    try:
        clash = RedisServer(tmp_path / "two", port=first.port)
        with pytest.raises(RuntimeError, match="redis-server exited"):
            clash.start()
    finally:
        first.stop()
