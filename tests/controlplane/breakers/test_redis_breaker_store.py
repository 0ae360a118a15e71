"""What only the Redis breaker store has: key layout, partitions, Redis going away."""

from __future__ import annotations

import pytest

from fusebox.agent.breaker import BreakerOverride, BreakerState, Counts
from fusebox.agent.policy import BreakerQuorum
from fusebox.controlplane.breakers.redis import RedisBreakerStore
from fusebox.controlplane.store_errors import StoreUnavailable
from tests.controlplane.breakers.breaker_cases import ManualClock, batch, breaker_key, policy
from tests.support.redis_server import RedisServer


async def test_every_key_of_a_breaker_carries_its_partition_hash_tag(redis_url: str) -> None:
    store = RedisBreakerStore(redis_url, partitions=16, clock=ManualClock())
    weird = breaker_key("weird{app}", "a/b:c")
    await store.apply([batch((-1,), key=weird, cb=policy("totalFailures >= 1"))])
    await store.set_override(weird, None, reason="", ttl=None, set_by="")
    keys = await store._client.keys("*")  # test-only peek at the layout
    tag = f"{{bp{store.partition_of(weird)}}}"
    assert keys and all(key.startswith(f"fusebox:{tag}:") for key in keys)
    assert {key.split(":", 2)[2].split(":")[0] for key in keys} == {
        "state", "recent", "events", "deadlines", "index",
    }
    await store.close()


async def test_quorum_sets_share_the_hash_tag_and_go_with_the_window(redis_url: str) -> None:
    store = RedisBreakerStore(redis_url, partitions=16, clock=ManualClock())
    weird = breaker_key("weird{app}", "a/b:c")
    cb = policy("consecutiveFailures >= 2", quorum=BreakerQuorum(min_instances=2))
    await store.apply([batch((-3,), key=weird, cb=cb, instance="a")])
    prefix = f"fusebox:{{bp{store.partition_of(weird)}}}:"
    keys = await store._client.keys("*")  # test-only peek at the layout
    assert {f"{prefix}qfail:{weird.encode()}", f"{prefix}qseen:{weird.encode()}"} <= set(keys)
    assert all(key.startswith(prefix) for key in keys)
    [event] = await store.apply([batch((-1,), key=weird, cb=cb, instance="b")])
    assert event.to_state is BreakerState.OPEN
    await store.reset(weird, reason="test", set_by="op")
    keys = await store._client.keys("*")
    assert not any(":qfail:" in key or ":qseen:" in key for key in keys)  # a new closed window
    await store.close()


@pytest.mark.parametrize(
    ("override", "stored"),
    [
        (BreakerOverride.FORCE_OPEN, "force_open"),
        (BreakerOverride.FORCE_CLOSED, "force_closed"),
        (BreakerOverride.DISABLED, "disabled"),
    ],
)
async def test_overrides_keep_the_stored_spelling_of_earlier_releases(
    redis_url: str, override: BreakerOverride, stored: str
) -> None:
    # Breakers written by any release stay readable: the hash keeps the words it had.
    store = RedisBreakerStore(redis_url, partitions=4, clock=ManualClock())
    await store.apply([batch((1,))])
    await store.set_override(breaker_key(), override, reason="r", ttl=None, set_by="ops")
    state_key = store._keys(breaker_key()).state  # test-only peek at the layout
    assert await store._client.hget(state_key, "ov") == stored
    snapshot = await store.get(breaker_key())
    assert snapshot is not None and snapshot.override is not None
    assert snapshot.override.override is override
    await store.close()


async def test_positions_resume_across_store_objects(redis_url: str) -> None:
    writer = RedisBreakerStore(redis_url, partitions=4)
    ids = [breaker_key(f"app{n}", "") for n in range(6)]
    await writer.apply([batch((-1,), key=i, cb=policy("totalFailures >= 1")) for i in ids[:3]])
    position, first = await writer.read_events("0")
    assert len(first) == 3
    await writer.apply([batch((-1,), key=i, cb=policy("totalFailures >= 1")) for i in ids[3:]])
    await writer.close()
    reader = RedisBreakerStore(redis_url, partitions=4)
    _, rest = await reader.read_events(position)
    assert {e.key for e in rest} == set(ids[3:])
    await reader.close()


async def test_store_unavailable_when_redis_stops_and_state_intact_after_restart(
    fresh_redis: RedisServer,
) -> None:
    store = RedisBreakerStore(fresh_redis.url, partitions=2)
    await store.apply([batch((3, -2))])
    fresh_redis.stop()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.apply([batch((-5,))])
    with pytest.raises(StoreUnavailable):
        await store.get(breaker_key())
    with pytest.raises(StoreUnavailable):
        await store.read_events("0")
    fresh_redis.start()
    await store.ping()
    snapshot = await store.get(breaker_key())
    assert snapshot is not None
    assert (snapshot.state, snapshot.generation, snapshot.counts) == (
        BreakerState.CLOSED, 0, Counts(5, 3, 2, 0, 2),
    )
    [event] = await store.apply([batch((-3,))])  # resumes counting where it was
    assert event.to_state is BreakerState.OPEN
    await store.close()


def test_partitions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="partitions"):
        RedisBreakerStore("redis://127.0.0.1:1/0", partitions=0)


async def test_scripts_flushed_from_redis_are_loaded_again_and_each_call_runs_once(
    redis_url: str,
) -> None:
    store = RedisBreakerStore(redis_url, partitions=4, clock=ManualClock())
    ids = [breaker_key(f"app{n}", "") for n in range(3)]
    cb = policy("consecutiveFailures >= 5")
    await store.apply([batch((2,), key=i, cb=cb) for i in ids])
    await store._client.script_flush()  # as a Redis restart without persistence would
    await store.apply([batch((3, -1), key=i, cb=cb) for i in ids])
    for i in ids:
        snapshot = await store.get(i)
        assert snapshot is not None
        assert (snapshot.counts.requests, snapshot.counts.consecutive_failures) == (6, 1)
    await store.close()
