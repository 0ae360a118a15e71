"""What only the Redis store has: outages, recovery, its key layout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from fusebox.controlplane.spec_store.base import SpecStore
from fusebox.controlplane.spec_store.redis import RedisSpecStore
from fusebox.controlplane.store_errors import StoreUnavailable
from tests.controlplane.spec_store.spec_store_cases import next_change, spec_write, within_deadline
from tests.support.redis_server import RedisServer

OPERATIONS: dict[str, Callable[[SpecStore], Awaitable[object]]] = {
    "ping": lambda store: store.ping(),
    "apply": lambda store: store.apply([spec_write("cb", "9s")]),
    "get": lambda store: store.get("default", "cb"),
    "get-revision": lambda store: store.get("default", "cb", revision=1),
    "list": lambda store: store.list(),
    "delete": lambda store: store.delete("default", "cb"),
    "history": lambda store: store.history("default", "cb"),
    "store_revision": lambda store: store.store_revision(),
    "control_plane_id": lambda store: store.control_plane_id(),
}


@pytest.mark.parametrize("operation", OPERATIONS)
async def test_every_operation_raises_store_unavailable_while_redis_is_down(
    fresh_redis: RedisServer, operation: str
) -> None:
    store = RedisSpecStore(fresh_redis.url)
    await store.apply([spec_write("cb", "1s")])
    fresh_redis.stop()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{fresh_redis.port}"):
        await OPERATIONS[operation](store)
    fresh_redis.start()
    await store.ping()
    assert (await store.get("default", "cb")).revision == 1
    await store.close()


async def test_a_store_for_an_address_nobody_listens_on_is_unavailable() -> None:
    from tests.support.redis_server import free_port

    store = RedisSpecStore(f"redis://127.0.0.1:{free_port()}/0")  # creating it does no I/O
    with pytest.raises(StoreUnavailable):
        await store.ping()
    await store.close()


async def _blocked_in_xread(server: RedisServer) -> None:
    """Returns once some client of ``server`` is waiting in XREAD BLOCK."""

    async def poll() -> None:
        while True:
            if "cmd=xread" in server.command("CLIENT", "LIST"):
                return
            await asyncio.sleep(0.01)  # poll interval of a condition wait

    await within_deadline(poll())


@pytest.mark.parametrize("outage", ["restart", "kill"])
async def test_changes_resumes_after_redis_comes_back(
    fresh_redis: RedisServer, outage: str
) -> None:
    store = RedisSpecStore(fresh_redis.url, block_seconds=0.5)
    writer = RedisSpecStore(fresh_redis.url)
    changes = store.changes(0)
    waiter = asyncio.ensure_future(next_change(changes))
    await writer.apply([spec_write("cb", "1s")])
    assert await within_deadline(waiter) == 1

    waiter = asyncio.ensure_future(next_change(changes))
    await _blocked_in_xread(fresh_redis)
    fresh_redis.stop() if outage == "restart" else fresh_redis.kill()
    with pytest.raises(StoreUnavailable):
        await writer.ping()
    assert not waiter.done()  # the tail waits for Redis instead of failing
    fresh_redis.start()
    await writer.apply([spec_write("cb", "2s")])
    assert await within_deadline(waiter) == 2
    await changes.aclose()  # type: ignore[attr-defined]
    await store.close()
    await writer.close()


async def test_all_keys_share_one_hash_slot_and_a_prefix(redis_url: str) -> None:
    store = RedisSpecStore(redis_url, key_prefix="team-a")
    await store.apply([spec_write("cb", "1s"), spec_write("x", "1s", namespace="prod")])
    await store.delete("default", "cb")
    team_a = await store.control_plane_id()
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted(await client.keys("*"))
    assert keys == [
        "team-a:{specs}:changes",
        "team-a:{specs}:control_plane_id",
        "team-a:{specs}:history:default/cb",
        "team-a:{specs}:history:prod/x",
        "team-a:{specs}:last_revision",
        "team-a:{specs}:live",
        "team-a:{specs}:live_digest",
        "team-a:{specs}:store_revision",
    ]
    assert await client.hkeys("team-a:{specs}:live") == ["prod/x"]
    assert await client.xlen("team-a:{specs}:changes") == 2
    other = RedisSpecStore(redis_url, key_prefix="team-b")
    assert (await other.list()) == ([], 0)
    assert await other.control_plane_id() != team_a  # another prefix, another control plane
    await client.aclose()
    await store.close()
    await other.close()
