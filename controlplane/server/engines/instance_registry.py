"""Where sidecars' app instances live: app-id -> addresses, each a renewable lease.

Two homes with one contract (``InstanceRegistry``):

* ``MemoryInstanceRegistry`` — in this server process; what the embedded
  control plane uses (one replica, nothing to share).
* ``RedisInstanceRegistry`` — in the Redis the server already uses for specs,
  so that every replica answers ``ResolveApp`` with the same instances. One
  sorted set per app (member: instance id, score: expiry time) and one hash
  (instance id -> address); both keys share a hash tag so Redis Cluster keeps
  them on one shard.

Expiry is judged by the clock of the replica that answers; replicas whose
clocks differ by less than a lease (10 s by default) agree on who is live.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from fusebox.controlplane.redis_client import (
    RedisClient,
    connect_redis,
    is_redis_url,
    parse_redis_url,
)


@dataclass(frozen=True, slots=True)
class RegisteredInstance:
    """One live instance of an app: who registered it and where the app listens."""

    instance_id: str
    address: str


class InstanceRegistry(Protocol):
    """Leases of app instances, per (namespace, app-id)."""

    async def register(self, namespace: str, app_id: str, instance: RegisteredInstance,
                       ttl: float) -> None:
        """Add or renew ``instance`` for ``ttl`` seconds from now."""

    async def deregister(self, namespace: str, app_id: str, instance_id: str) -> bool:
        """Remove an instance; False if it was not (or no longer) registered."""

    async def resolve(self, namespace: str, app_id: str) -> list[RegisteredInstance]:
        """The live instances, sorted by instance id."""

    async def close(self) -> None:
        """Release connections."""


class MemoryInstanceRegistry:
    """An ``InstanceRegistry`` in process memory; ``clock`` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._apps: dict[tuple[str, str], dict[str, tuple[str, float]]] = {}
        self._lock = asyncio.Lock()

    async def register(self, namespace: str, app_id: str, instance: RegisteredInstance,
                       ttl: float) -> None:
        async with self._lock:
            instances = self._apps.setdefault((namespace, app_id), {})
            instances[instance.instance_id] = (instance.address, self._clock() + ttl)

    async def deregister(self, namespace: str, app_id: str, instance_id: str) -> bool:
        async with self._lock:
            live = self._live((namespace, app_id))
            return live.pop(instance_id, None) is not None

    async def resolve(self, namespace: str, app_id: str) -> list[RegisteredInstance]:
        async with self._lock:
            live = self._live((namespace, app_id))
            return [RegisteredInstance(i, live[i][0]) for i in sorted(live)]

    def _live(self, key: tuple[str, str]) -> dict[str, tuple[str, float]]:
        now = self._clock()
        instances = self._apps.get(key, {})
        for instance_id in [i for i, (_, expiry) in instances.items() if expiry <= now]:
            del instances[instance_id]
        if not instances:
            self._apps.pop(key, None)
        return instances

    async def close(self) -> None:
        return None


class RedisInstanceRegistry:
    """An ``InstanceRegistry`` shared by every replica through Redis.

    ``clock`` is wall-clock seconds (scores must mean the same on every replica).
    """

    def __init__(self, url: str, *, key_prefix: str = "fusebox",
                 clock: Callable[[], float] = time.time) -> None:
        # Every topology (plain, Cluster, Sentinel): one app's keys share a hash tag.
        self._client: RedisClient = connect_redis(parse_redis_url(url), socket_timeout=5.0)
        self._prefix = key_prefix
        self._clock = clock

    def _keys(self, namespace: str, app_id: str) -> tuple[str, str]:
        base = f"{self._prefix}:registry:{{{namespace}/{app_id}}}"
        return f"{base}:expiry", f"{base}:address"

    async def register(self, namespace: str, app_id: str, instance: RegisteredInstance,
                       ttl: float) -> None:
        expiry_key, address_key = self._keys(namespace, app_id)
        now = self._clock()
        expired = await self._client.zrangebyscore(expiry_key, "-inf", now)
        async with self._client.pipeline(transaction=True) as pipe:
            if expired:
                pipe.zrem(expiry_key, *expired)
                pipe.hdel(address_key, *expired)
            pipe.zadd(expiry_key, {instance.instance_id: now + ttl})
            pipe.hset(address_key, instance.instance_id, instance.address)
            # The keys outlive their newest lease a little, then vanish by themselves.
            lifetime = max(1, int(ttl * 2) + 1)
            pipe.expire(expiry_key, lifetime)
            pipe.expire(address_key, lifetime)
            await pipe.execute()

    async def deregister(self, namespace: str, app_id: str, instance_id: str) -> bool:
        expiry_key, address_key = self._keys(namespace, app_id)
        score = await self._client.zscore(expiry_key, instance_id)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.zrem(expiry_key, instance_id)
            pipe.hdel(address_key, instance_id)
            await pipe.execute()
        return score is not None and float(score) > self._clock()

    async def resolve(self, namespace: str, app_id: str) -> list[RegisteredInstance]:
        expiry_key, address_key = self._keys(namespace, app_id)
        live = [str(i) for i in
                await self._client.zrangebyscore(expiry_key, f"({self._clock()}", "+inf")]
        if not live:
            return []
        addresses = await self._client.hmget(address_key, live)
        return sorted(
            (RegisteredInstance(i, str(a)) for i, a in zip(live, addresses, strict=True) if a),
            key=lambda r: r.instance_id,
        )

    async def close(self) -> None:
        await self._client.aclose()


def open_instance_registry(store_url: str | None) -> InstanceRegistry:
    """The Redis registry when the specs live in Redis (shared by replicas), else memory."""
    if is_redis_url(store_url):
        assert store_url is not None
        return RedisInstanceRegistry(store_url)
    return MemoryInstanceRegistry()
