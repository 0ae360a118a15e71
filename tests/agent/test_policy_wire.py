"""Policies on the wire and on disk: decoding snapshots, sharing decodings, the cache file."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from hypothesis import given
from hypothesis import strategies as st

import fusebox.agent._link as agent_link
import fusebox.agent.policy as agent_policy
from fusebox.agent._link import _CACHE_WRITER, DeferredCacheWrite, PolicyCache
from fusebox.agent.policy import (
    BackoffKind,
    CircuitBreakerPolicy,
    FallbackPolicy,
    FallbackResponse,
    ResolvedPolicies,
    RetryPolicy,
    StatusCodes,
    TargetKind,
    TargetPolicy,
    TimeoutPolicy,
    _decode_resolved,
    _seconds,
    resolved_from_proto,
    resolved_to_proto,
)
from fusebox.v1 import agent_pb2, policy_pb2
from tests.agent.test_policy_link import Received, link_config
from tests.support.eventually import eventually_async
from tests.support.redis_server import free_port

RETRY = RetryPolicy("retryForever", BackoffKind.EXPONENTIAL, max_retries=-1,
                    max_interval=15.0, http_status_codes=StatusCodes(((500, 599),)))


def policies(timeout: float = 5.0, app: str = "checkout") -> ResolvedPolicies:
    return ResolvedPolicies("default", app, (
        TargetPolicy(TargetKind.APP, "order-processor",
                     timeout=TimeoutPolicy("general", timeout), retry=RETRY,
                     circuit_breaker=CircuitBreakerPolicy("simpleCB", 1, 8.0, 5.0,
                                                          "consecutiveFailures > 5"),
                     fallback=FallbackPolicy("canned", FallbackResponse(200, (), b"{}"),
                                             grpc_status_codes=StatusCodes(((14, 14),))),
                     spec_namespace="default", spec_name="myresiliency"),
    ), builtin_retries={"DaprBuiltInServiceRetries": RETRY})


def wire(p: ResolvedPolicies) -> policy_pb2.ResolvedPolicies:
    return policy_pb2.ResolvedPolicies.FromString(resolved_to_proto(p).SerializeToString())


def cache_at(path: Path) -> PolicyCache:
    return PolicyCache(path, server="127.0.0.1:50051", namespace="default", app_id="checkout")


def cached_timeout(cache: PolicyCache) -> float | None:
    """The general timeout of the policies the cache file holds."""
    loaded = cache.load()
    assert loaded is not None
    timeout = resolved_from_proto(loaded.policies).targets[0].timeout
    return None if timeout is None else timeout.duration


def test_a_snapshot_decodes_to_the_policies_it_was_made_from() -> None:
    decoded = resolved_from_proto(wire(policies()))
    assert decoded.targets == policies().targets
    assert dict(decoded.builtin_retries) == dict(policies().builtin_retries)


def test_the_same_snapshot_bytes_share_one_immutable_decoding() -> None:
    first, again = resolved_from_proto(wire(policies())), resolved_from_proto(wire(policies()))
    assert again is first
    changed = resolved_from_proto(wire(policies(timeout=6.0)))
    assert changed is not first
    assert changed.targets[0].timeout == TimeoutPolicy("general", 6.0)
    timeout = first.targets[0].timeout
    assert timeout is not None
    with pytest.raises(AttributeError):
        timeout.duration = 1.0  # type: ignore[misc]


def test_shared_decodings_are_bounded() -> None:
    apps = [f"app-{n}" for n in range(20)]
    decoded = [resolved_from_proto(wire(policies(app=a))) for a in apps]
    assert [d.app_id for d in decoded] == apps
    # The oldest were dropped: decoding them again gives an equal, new object.
    again = resolved_from_proto(wire(policies(app=apps[0])))
    assert again == decoded[0] and again is not decoded[0]


def test_a_snapshot_with_an_unknown_target_kind_is_refused_every_time() -> None:
    message = wire(policies())
    message.targets[0].kind = 99  # type: ignore[assignment]
    for _ in range(2):  # a refusal is not remembered as a decoding
        with pytest.raises(ValueError, match="unknown target kind 99"):
            resolved_from_proto(message)


@given(st.integers(min_value=0, max_value=315_576_000_000),
       st.integers(min_value=0, max_value=999_999_999))
def test_durations_decode_exactly_as_protobuf_converts_them(seconds: int, nanos: int) -> None:
    d = Duration(seconds=seconds, nanos=nanos)
    assert _seconds(d) == d.ToNanoseconds() / 1e9


def test_decoding_without_sharing_gives_equal_policies() -> None:
    assert _decode_resolved(wire(policies())) == resolved_from_proto(wire(policies()))


# -- the disk cache ----------------------------------------------------------------------


def test_the_cache_is_written_whole_creating_its_directory(tmp_path: Path) -> None:
    cache = cache_at(tmp_path / "deep" / "er" / "checkout.pb")
    cache.save(resolved_to_proto(policies()), "cp-1")
    cache.save(resolved_to_proto(policies(timeout=7.0)), "cp-1")
    assert cached_timeout(cache) == 7.0
    assert sorted(p.name for p in (tmp_path / "deep" / "er").iterdir()) == ["checkout.pb"]


def test_two_caches_on_one_path_never_leave_a_torn_or_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "checkout.pb"
    first, second = cache_at(path), cache_at(path)
    for n in range(20):
        (first if n % 2 else second).save(resolved_to_proto(policies(timeout=float(n + 1))), "")
    assert cached_timeout(cache_at(path)) == 20.0
    assert [p.name for p in tmp_path.iterdir()] == ["checkout.pb"]


def test_an_unwritable_cache_is_logged_and_leaves_nothing_behind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "checkout.pb"
    path.mkdir()  # a directory where the file should be: the rename fails
    with caplog.at_level(logging.WARNING, logger="fusebox.agent"):
        cache_at(path).save(resolved_to_proto(policies()), "cp-1")
    assert "cannot write the policy cache" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["checkout.pb"]


# -- deferred cache writes -----------------------------------------------------------------


class CountingCache(PolicyCache):
    def __init__(self, path: Path) -> None:
        super().__init__(path, server="127.0.0.1:50051", namespace="default", app_id="checkout")
        self.saved: list[float] = []  # the timeout of each snapshot written

    def save(self, policies: policy_pb2.ResolvedPolicies, control_plane_id: str,
             fleet_sizes: tuple[agent_pb2.BudgetFleetSize, ...] = ()) -> None:
        super().save(policies, control_plane_id, fleet_sizes)
        self.saved.append(policies.targets[0].timeout.duration.seconds)


def written(cache: CountingCache) -> list[float]:
    _CACHE_WRITER.submit(lambda: None).result(timeout=5)  # FIFO: earlier saves are done
    return cache.saved


@pytest.fixture
def short_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_link, "CACHE_SETTLE_SECONDS", 0.2)
    monkeypatch.setattr(agent_link, "CACHE_MAX_DELAY_SECONDS", 0.6)


@pytest.mark.usefixtures("short_delays")
async def test_a_burst_of_snapshots_is_written_once_after_it_settles(tmp_path: Path) -> None:
    cache = CountingCache(tmp_path / "checkout.pb")
    deferred = DeferredCacheWrite(cache)
    for n in range(1, 6):
        deferred.offer(resolved_to_proto(policies(timeout=float(n))))
    assert written(cache) == []  # nothing during the burst
    await eventually_async(lambda: bool(written(cache)), what="the settled write")
    assert written(cache) == [5]


@pytest.mark.usefixtures("short_delays")
async def test_constant_churn_is_still_written_within_the_maximum_delay(tmp_path: Path) -> None:
    cache = CountingCache(tmp_path / "checkout.pb")
    deferred = DeferredCacheWrite(cache)
    loop = asyncio.get_running_loop()
    started = loop.time()
    n = 0
    # A snapshot every 0.1 s never leaves the 0.2 s settle time; the 0.6 s bound writes.
    while not written(cache) and loop.time() - started < 10:
        n += 1
        deferred.offer(resolved_to_proto(policies(timeout=float(n))))
        await asyncio.sleep(0.1)
    # Without the bound it would wait for the churn to stop: here, the 10 s guard.
    assert written(cache) and loop.time() - started < 5


async def test_flushing_writes_the_newest_snapshot_now(tmp_path: Path) -> None:
    cache = CountingCache(tmp_path / "checkout.pb")
    deferred = DeferredCacheWrite(cache)
    deferred.offer(resolved_to_proto(policies(timeout=3.0)))
    deferred.offer(resolved_to_proto(policies(timeout=4.0)))
    deferred.flush()
    deferred.flush()  # nothing left: no second write
    assert written(cache) == [4]


@pytest.mark.e2e  # a Python process of its own
def test_a_snapshot_still_waiting_is_written_when_the_process_exits(tmp_path: Path) -> None:
    path = tmp_path / "checkout.pb"
    program = f"""
import asyncio
from pathlib import Path
from fusebox.agent._link import DeferredCacheWrite
from fusebox.agent.policy import resolved_to_proto
from tests.agent.test_policy_wire import cache_at, policies

async def main():
    DeferredCacheWrite(cache_at(Path({str(path)!r}))).offer(resolved_to_proto(policies(9.0)))

asyncio.run(main())  # exits long before the settle time
"""
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60,
                   cwd=Path(__file__).resolve().parents[2])
    assert cached_timeout(cache_at(path)) == 9.0


async def test_a_link_reading_its_cache_waits_for_queued_saves_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    _CACHE_WRITER.submit(release.wait, 30)  # a slow save ahead in the writer's queue
    link = agent_link.AsyncPolicyLink(
        link_config(free_port(), tmp_path, initial_fetch_timeout=0), Received())
    starting = asyncio.create_task(link.start())
    ticks = 0
    while not starting.done() and ticks < 20:
        await asyncio.sleep(0.01)  # the loop keeps running while start() waits
        ticks += 1
    assert ticks == 20 and not starting.done()
    release.set()
    async with asyncio.timeout(10):
        await starting
    await link.aclose()


async def test_a_link_reads_its_cache_anyway_when_queued_saves_take_too_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(agent_link, "CACHE_BARRIER_SECONDS", 0.1)
    release = threading.Event()
    _CACHE_WRITER.submit(release.wait, 30)
    link = agent_link.AsyncPolicyLink(
        link_config(free_port(), tmp_path, initial_fetch_timeout=0), Received())
    try:
        async with asyncio.timeout(10):
            await link.start()
    finally:
        release.set()
        await link.aclose()


def test_links_on_many_threads_decode_side_by_side_without_spurious_errors() -> None:
    messages = [wire(policies(app=f"app-{n}")) for n in range(40)]
    errors: list[BaseException] = []

    def decode_all() -> None:
        try:
            for _ in range(50):
                for m in messages:
                    assert resolved_from_proto(m).app_id == m.app_id
        except BaseException as e:  # collected: a thread's failure must fail the test
            errors.append(e)

    threads = [threading.Thread(target=decode_all) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert len(agent_policy._DECODED) <= agent_policy._DECODED_MAX
