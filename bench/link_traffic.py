"""Zero network I/O per call: agents linked to a real control plane, traffic counted.

A ``FuseboxServer`` (memory store) runs in a background thread behind a
``CountingProxy``; the spec below is applied over gRPC; a sync ``Agent`` and
an ``AsyncAgent`` connect through the proxy and receive their policies from
the server. Then each makes a small and a large batch of guarded calls. For
each batch we record:

* the gRPC messages, HTTP/2 frames and bytes the agent sent to the server
  (counted on the wire by the proxy, each message decoded as a
  ``ConnectRequest``: hello, ACK, outcome report with how many outcomes it
  carries, interest), including a settling pause after the batch so that
  anything a background flusher sends *because of* the calls is counted too;
* the read/write system calls made by the calling thread during the batch
  (``/proc/thread-self/io``): I/O on the call path would show there even if it
  bypassed the link.

The traffic at connect time (hello, ACK) is reported too: it proves the
counter sees and decodes the agent's messages, so a zero during the batches
means zero. With cluster-wide breakers the agent reports outcomes every few
milliseconds, run-length encoded: the report count then follows elapsed time,
not the number of calls, and ``outcomes`` shows that every call was reported.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.control_plane import BackgroundControlPlane
from bench.hot_path import (
    APP_ID,
    BREAKER_APP,
    BREAKER_METHOD,
    RETRY_APP,
    RETRY_METHOD,
    async_work,
    work,
)
from bench.timing import compiled_async_loop, gc_disabled, sync_loop
from bench.wire_count import SyscallCount, ThreadIO, WireCount
from fusebox.agent import Agent, AsyncAgent
from fusebox.agent.policy import TargetKind

SPEC_YAML = f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: bench
scopes:
  - {APP_ID}
spec:
  policies:
    retries:
      threeAttempts:
        policy: constant
        duration: 1s
        maxRetries: 2
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures >= 5
  targets:
    apps:
      {BREAKER_APP}:
        circuitBreaker: simpleCB
      {RETRY_APP}:
        retry: threeAttempts
        circuitBreaker: simpleCB
"""

SYNC_DEADLINE = 20.0  # seconds to connect and receive the first snapshot
SETTLE_SECONDS = 0.2  # after a batch: lets a background flusher send what the calls caused
HELLO_AND_ACK = 2
RATE_MIN_CALLS = 10_000  # batches this large must send < 1 message per 1,000 calls
WARMUP_CALLS = 1000
TARGETS = ((BREAKER_APP, BREAKER_METHOD), (RETRY_APP, RETRY_METHOD))


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch of guarded calls and the traffic it caused."""

    target: str
    calls: int
    ns_per_call: float
    sent: WireCount  # agent -> server during the batch and its settling pause
    received: WireCount  # server -> agent, likewise
    thread_syscalls: SyscallCount | None  # the calling thread, during the batch only

    def as_dict(self) -> dict[str, Any]:
        syscalls = self.thread_syscalls
        return {
            "target": self.target, "calls": self.calls, "ns_per_call": round(self.ns_per_call, 1),
            "sent": self.sent.as_dict(), "received": self.received.as_dict(),
            "thread_syscalls": None if syscalls is None
            else {"reads": syscalls.reads, "writes": syscalls.writes},
        }


@dataclass(frozen=True, slots=True)
class LinkReport:
    """One agent flavour: its connect-time traffic and its batches."""

    flavour: str
    connect_sent: WireCount
    connect_received: WireCount
    batches: tuple[Batch, ...]

    @property
    def counter_works(self) -> bool:
        """The proxy saw and decoded the agent's hello and ACK: its zeros can be trusted."""
        sent = self.connect_sent.contents
        return sent.get("hello", 0) >= 1 and sent.get("policy_ack", 0) >= 1

    @property
    def passed(self) -> bool:
        """Counter proven live, messages bounded, no read/write syscall on the call path.

        Bounded: every batch of at least ``RATE_MIN_CALLS`` calls sent fewer
        than one message per 1,000 calls (reports are periodic, not per call).
        """
        if not self.counter_works:
            return False
        return all(
            (b.calls < RATE_MIN_CALLS or b.sent.grpc_messages * 1000 < b.calls)
            and (b.thread_syscalls is None or b.thread_syscalls == SyscallCount(0, 0))
            for b in self.batches
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour, "connect_sent": self.connect_sent.as_dict(),
            "connect_received": self.connect_received.as_dict(),
            "batches": [b.as_dict() for b in self.batches],
            "counter_works": self.counter_works, "passed": self.passed,
        }


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + SYNC_DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError(f"benchmark setup: {what} within {SYNC_DEADLINE:g}s")
        time.sleep(0.01)


async def _await_until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + SYNC_DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError(f"benchmark setup: {what} within {SYNC_DEADLINE:g}s")
        await asyncio.sleep(0.01)


def _has_server_policies(fb: Agent | AsyncAgent) -> bool:
    policies = fb.policies
    if policies is None:
        return False
    target = policies.lookup(TargetKind.APP, BREAKER_APP)
    return target is not None and target.circuit_breaker is not None


@dataclass(frozen=True, slots=True)
class LinkSection:
    reports: tuple[LinkReport, ...]
    late_grpc_events: int  # grpc.aio events for the sync link's closed loop (harmless)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.reports)

    def as_dict(self) -> dict[str, Any]:
        return {"agents": [r.as_dict() for r in self.reports],
                "late_grpc_events": self.late_grpc_events}


def run(batch_sizes: tuple[int, ...]) -> LinkSection:
    """Start the control plane, apply the spec, measure both agent flavours."""
    io = ThreadIO()
    async_loop = asyncio.new_event_loop()
    control_plane = BackgroundControlPlane()
    try:
        with tempfile.TemporaryDirectory(prefix="fusebox-bench-") as tmp, control_plane as cp:
            cp.apply_spec(SPEC_YAML)
            sync_report = _sync_agent(cp, io, Path(tmp) / "sync.pb", batch_sizes)
            async_report = async_loop.run_until_complete(
                _async_agent(cp, io, Path(tmp) / "async.pb", batch_sizes)
            )
    finally:
        # Closed only after the server stopped: grpc.aio still delivers the
        # channel's last completion events to the loop that created it.
        async_loop.run_until_complete(async_loop.shutdown_asyncgens())
        async_loop.close()
    return LinkSection((sync_report, async_report), control_plane.late_grpc_events)


class _BatchRecorder:
    """Brackets one batch: traffic and calling-thread syscalls before, then after."""

    def __init__(self, cp: BackgroundControlPlane, io: ThreadIO) -> None:
        self._cp, self._io = cp, io

    def before(self) -> None:
        self._sent, self._received = self._cp.agent_traffic()
        self._syscalls = self._io.snapshot()  # last: nothing else runs before the loop

    def calls_done(self) -> None:
        self._syscalls_during = self._io.since(self._syscalls)  # first: before anything else

    def after_settling(self, target: str, calls: int, elapsed: float) -> Batch:
        sent, received = self._cp.agent_traffic()
        return Batch(target, calls, elapsed / calls * 1e9, sent - self._sent,
                     received - self._received, self._syscalls_during)


def _sync_agent(cp: BackgroundControlPlane, io: ThreadIO, cache: Path,
                batch_sizes: tuple[int, ...]) -> LinkReport:
    start_sent, start_received = cp.agent_traffic()
    with Agent(app_id=APP_ID, server=cp.agent_address, cache_path=cache,
               instance_id="bench-sync") as fb:
        _wait_until(lambda: _has_server_policies(fb), "the sync agent received no policies")
        _wait_until(lambda: cp.agent_traffic()[0].grpc_messages - start_sent.grpc_messages
                    >= HELLO_AND_ACK, "the proxy saw no hello and ACK")
        time.sleep(SETTLE_SECONDS)  # HTTP/2 housekeeping after the snapshot counts as connect
        connect_sent, connect_received = cp.agent_traffic()
        batches = []
        recorder = _BatchRecorder(cp, io)
        for app, method in TARGETS:
            target = fb.app(app, method=method)
            loop = sync_loop("target.call(fn)", {"target": target, "fn": work})
            loop(WARMUP_CALLS)  # plan resolved, breaker created
            time.sleep(SETTLE_SECONDS)  # its interest and reports are not the batch's
            for calls in batch_sizes:
                recorder.before()
                elapsed = loop(calls)
                recorder.calls_done()
                time.sleep(SETTLE_SECONDS)
                batches.append(recorder.after_settling(target.name, calls, elapsed))
    return LinkReport("sync Agent", connect_sent - start_sent,
                      connect_received - start_received, tuple(batches))


async def _async_agent(cp: BackgroundControlPlane, io: ThreadIO, cache: Path,
                       batch_sizes: tuple[int, ...]) -> LinkReport:
    start_sent, start_received = cp.agent_traffic()
    async with AsyncAgent(app_id=APP_ID, server=cp.agent_address, cache_path=cache,
                          instance_id="bench-async") as fb:
        await _await_until(lambda: _has_server_policies(fb),
                           "the async agent received no policies")
        await _await_until(lambda: cp.agent_traffic()[0].grpc_messages
                           - start_sent.grpc_messages >= HELLO_AND_ACK,
                           "the proxy saw no hello and ACK")
        await asyncio.sleep(SETTLE_SECONDS)
        connect_sent, connect_received = cp.agent_traffic()
        batches = []
        recorder = _BatchRecorder(cp, io)
        for app, method in TARGETS:
            target = fb.app(app, method=method)
            timed = compiled_async_loop("target.call(fn)", {"target": target, "fn": async_work})
            await timed(itertools.repeat(None, WARMUP_CALLS), time.perf_counter)
            await asyncio.sleep(SETTLE_SECONDS)
            for calls in batch_sizes:
                recorder.before()
                with gc_disabled():
                    elapsed = await timed(itertools.repeat(None, calls), time.perf_counter)
                recorder.calls_done()
                await asyncio.sleep(SETTLE_SECONDS)  # the link task runs on this loop too
                batches.append(recorder.after_settling(target.name, calls, elapsed))
    return LinkReport("AsyncAgent", connect_sent - start_sent,
                      connect_received - start_received, tuple(batches))
