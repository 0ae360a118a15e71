"""Test helpers shared by every test package (real processes, never fakes)."""

from tests.support.redis_server import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
