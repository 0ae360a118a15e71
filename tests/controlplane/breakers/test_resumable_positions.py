"""When a reader cannot resume from a position, each store says so (``resumable``).

The cases the contract suite cannot share: an embedded store restarted (its
numbers start again), events trimmed from a stream, a Redis flushed and its
streams recreated, a position beyond the end of the stream.
"""

from __future__ import annotations

import pytest

from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.breakers.redis import RedisBreakerStore
from fusebox.controlplane.breakers.store import BreakerStore
from tests.controlplane.breakers.breaker_cases import ManualClock, batch, breaker_key, policy
from tests.support.redis_server import RedisServer


async def trip(store: BreakerStore, count: int, first: int = 0) -> None:
    cb = policy("consecutiveFailures >= 1", timeout=30.0)
    for i in range(first, first + count):
        await store.apply([batch((-1,), key=breaker_key("checkout", f"m{i}"), cb=cb)])


async def test_a_position_of_a_restarted_embedded_store_is_not_resumable() -> None:
    before = EmbeddedBreakerStore(clock=ManualClock())
    await trip(before, 1)
    old, _ = await before.read_events("0")
    after = EmbeddedBreakerStore(clock=ManualClock())
    await trip(after, 3)  # the new stream is past the old position's number
    assert not await after.resumable(old)
    assert not await after.resumable(old.partition("@")[0])  # a bare number: whose?


async def test_an_embedded_position_whose_next_events_were_trimmed_is_not_resumable() -> None:
    store = EmbeddedBreakerStore(clock=ManualClock(), events_maxlen=3)
    await trip(store, 6)
    _, held = await store.read_events("0")
    assert len(held) == 3  # events 4..6 are held, 1..3 dropped
    assert await store.resumable(held[0].position)  # 5 and 6 follow it, both held
    oldest = held[0].position.replace("4@", "3@")  # 4 follows it: held
    assert await store.resumable(oldest)
    assert not await store.resumable(held[0].position.replace("4@", "2@"))  # 3 is gone
    assert not await store.resumable("0")
    assert not await store.resumable(held[-1].position.replace("6@", "7@"))  # beyond the end


async def test_a_redis_position_whose_next_events_were_trimmed_is_not_resumable(
    redis_url: str,
) -> None:
    # MAXLEN ~ trims whole stream nodes (100 entries): write well past one.
    store = RedisBreakerStore(redis_url, clock=ManualClock(), partitions=1, events_maxlen=10)
    try:
        first, _ = await store.read_events("")
        await trip(store, 1)
        after_first, _ = await store.read_events(first)
        await trip(store, 250, first=1)
        _, held = await store.read_events(after_first)
        assert len(held) < 250  # some were trimmed
        assert not await store.resumable(first)
        assert not await store.resumable(after_first)
        assert await store.resumable(held[0].position)
        assert await store.resumable(held[-1].position)
    finally:
        await store.close()


async def test_a_redis_position_from_before_a_flush_is_not_resumable(
    redis_server: RedisServer, redis_url: str,
) -> None:
    store = RedisBreakerStore(redis_url, clock=ManualClock(), partitions=2)
    try:
        await trip(store, 4)
        before, _ = await store.read_events("0")
        redis_server.flushall()
        await trip(store, 4)  # the streams are created again, with later ids
        assert not await store.resumable(before)
        now, _ = await store.read_events("0")
        assert await store.resumable(now)
    finally:
        await store.close()


@pytest.mark.parametrize("position", ["99999999999999-0,0-0", "0-0,99999999999999-5"])
async def test_a_redis_position_beyond_the_end_is_not_resumable(
    redis_url: str, position: str,
) -> None:
    store = RedisBreakerStore(redis_url, clock=ManualClock(), partitions=2)
    try:
        await trip(store, 4)
        assert not await store.resumable(position)
    finally:
        await store.close()
