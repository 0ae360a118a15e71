"""A scale-benchmark worker: a few hundred ``AsyncAgent``s on one event loop, over stdin.

Commands (JSON lines on stdin) and events (JSON lines on stdout):

    {"cmd": "start", "agents": 250, "first": 0, "servers": ["127.0.0.1:1", ...],
     "busy": 10, "cache_dir": "/tmp/..."}  -> {"event": "ready", "agents": 250}
        agent i connects to servers[i % len], holds the traffic breaker
        ``upstream:work{i % busy}`` and the trip breaker ``upstream:trip``.
    {"cmd": "traffic", "upstream": "127.0.0.1:PORT", "interval": 2.0}
        every agent calls the upstream through ``fb.app("upstream", method=...).call``
        every ``interval`` seconds (start times spread over one interval).
    {"cmd": "stop_traffic"}               -> {"event": "traffic", "ok": n, "other": {...}}
    {"cmd": "arm", "kind": "digest" | "open" | "closed"} -> {"event": "armed"}
        then, once every agent of this worker saw it: {"event": "round", "kind": ...,
        "t": [time.time() of each agent]}: its policy digest changed from the one held
        when armed (policies applied, ACK on its way), or its trip breaker went open/closed.
    {"cmd": "trip", "agent": i, "failures": 5} -> {"event": "tripped", "t": ...}
        the crossing failure's completion time.
    {"cmd": "probe", "agents": [i, ...]}  -> {"event": "probed", "ok": n, "rejected": m}
        those agents call the trip breaker concurrently with a succeeding call: in
        half-open each needs a probe lease (at most maxRequests are granted).
    {"cmd": "close"}                      -> {"event": "closed"}
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
import traceback
from collections import Counter
from typing import Any

from bench._cluster_worker import UpstreamFailed, http_get
from fusebox.agent import AsyncAgent, BreakerOpenError, ResolvedPolicies
from fusebox.agent.events import StateChangeEvent

TRIP_METHOD = "trip"


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class StampedAgent(AsyncAgent):
    """An AsyncAgent that tells the worker when new policies are in force."""

    worker: Worker
    index: int

    def set_policies(self, resolved: ResolvedPolicies) -> None:
        super().set_policies(resolved)
        self.worker.policies_applied(self.index, resolved.digest)


class Round:
    def __init__(self, kind: str, baseline: dict[int, str]) -> None:
        self.kind = kind
        self.baseline = baseline
        self.stamps: dict[int, float] = {}


class Worker:
    def __init__(self) -> None:
        self.agents: dict[int, StampedAgent] = {}
        self.traffic_targets: dict[int, Any] = {}
        self.trip_targets: dict[int, Any] = {}
        self.digests: dict[int, str] = {}
        self.round: Round | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.running = False
        self.counts: Counter[str] = Counter()

    async def start(self, command: dict[str, Any]) -> None:
        servers: list[str] = command["servers"]
        busy = int(command["busy"])
        first = int(command["first"])
        cache_dir = command.get("cache_dir")
        for i in range(first, first + int(command["agents"])):
            fb = StampedAgent(app_id="checkout", server=servers[i % len(servers)],
                              instance_id=f"scale-agent-{i}",
                              # One policy cache per agent, in the run's directory (the
                              # default is shared by app id and lives in ~/.cache).
                              cache_path=f"{cache_dir}/agent-{i}.pb" if cache_dir else None)
            fb.worker, fb.index = self, i
            fb.on_state_change(self._hook(i))
            await fb.start()
            self.agents[i] = fb
            self.traffic_targets[i] = fb.app("upstream", method=f"work{i % busy}")
            self.trip_targets[i] = fb.app("upstream", method=TRIP_METHOD)
        for i, fb in self.agents.items():
            await _wait(lambda fb=fb: fb.policies is not None and bool(fb.policies.targets)
                        and _following(fb), f"agent {i} following the cluster")
            # First calls create both breakers; the link then announces interest.
            await self.traffic_targets[i].call(_succeed)
            await self.trip_targets[i].call(_succeed)
        emit(event="ready", agents=len(self.agents))

    def policies_applied(self, agent: int, digest: str) -> None:
        self.digests[agent] = digest
        r = self.round
        if r is not None and r.kind == "digest" and digest != r.baseline.get(agent):
            self._stamp(agent)

    def _hook(self, agent: int) -> Any:
        def on_state_change(e: StateChangeEvent) -> None:
            r = self.round
            if r is not None and e.breaker.endswith(TRIP_METHOD) and str(e.to_state) == r.kind:
                self._stamp(agent)
        return on_state_change

    def _stamp(self, agent: int) -> None:
        r = self.round
        assert r is not None
        r.stamps.setdefault(agent, time.time())
        if len(r.stamps) == len(self.agents):
            self.round = None
            emit(event="round", kind=r.kind, t=list(r.stamps.values()))

    def arm(self, kind: str) -> None:
        self.round = Round(kind, dict(self.digests))
        emit(event="armed")

    async def trip(self, agent: int, failures: int) -> None:
        target, last = self.trip_targets[agent], 0.0
        for _ in range(failures):
            try:
                await target.call(_fail)
            except UpstreamFailed:
                last = time.time()
            except BreakerOpenError:
                break
        emit(event="tripped", t=last)

    async def probe(self, agents: list[int]) -> None:
        async def one(agent: int) -> bool:
            try:
                await self.trip_targets[agent].call(_succeed)
                return True
            except BreakerOpenError:
                return False

        results = await asyncio.gather(*(one(i) for i in agents))
        emit(event="probed", ok=sum(results), rejected=len(results) - sum(results))

    def traffic(self, upstream: str, interval: float) -> None:
        host, _, port = upstream.rpartition(":")
        self.running = True
        for i in self.agents:
            self.tasks.append(asyncio.create_task(self._calls(i, host, int(port), interval)))

    async def _calls(self, agent: int, host: str, port: int, interval: float) -> None:
        target = self.traffic_targets[agent]
        await asyncio.sleep(random.uniform(0, interval))  # spread the fleet over an interval
        while self.running:
            try:
                await target.call(http_get, host, port, "work")
                self.counts["ok"] += 1
            except BreakerOpenError:
                self.counts["open"] += 1
            except (UpstreamFailed, OSError) as e:
                self.counts[type(e).__name__] += 1
            await asyncio.sleep(interval)

    async def stop_traffic(self) -> None:
        self.running = False
        for task in self.tasks:  # do not wait out a long --interval sleep
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        ok = self.counts.pop("ok", 0)
        emit(event="traffic", ok=ok, other=dict(self.counts))
        self.counts.clear()

    async def close(self) -> None:
        await self.stop_traffic() if self.tasks else None
        for fb in self.agents.values():
            await fb.aclose()
        self.agents.clear()


def _following(fb: AsyncAgent) -> bool:
    """Whether the agent's breakers follow the cluster (private state: a benchmark probe)."""
    cluster = getattr(getattr(fb, "_link", None), "cluster", None)
    return bool(getattr(cluster, "following", False))


async def _wait(condition: Any, what: str, deadline: float = 120.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not within {deadline}s")
        await asyncio.sleep(0.02)  # poll interval of the condition above


async def _succeed() -> int:
    return 1


async def _fail() -> int:
    raise UpstreamFailed(500)


async def main() -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    loop.run_in_executor(None, _pump_stdin, loop, lines)  # stdin never blocks the loop
    worker = Worker()
    try:
        while line := await lines.get():
            command = json.loads(line)
            try:
                kind = command["cmd"]
                if kind == "start":
                    await worker.start(command)
                elif kind == "traffic":
                    worker.traffic(command["upstream"], float(command["interval"]))
                elif kind == "stop_traffic":
                    await worker.stop_traffic()
                elif kind == "arm":
                    worker.arm(command["kind"])
                elif kind == "trip":
                    await worker.trip(int(command["agent"]), int(command["failures"]))
                elif kind == "probe":
                    await worker.probe([int(i) for i in command["agents"]])
                elif kind == "close":
                    await worker.close()
                    emit(event="closed")
            except Exception as e:
                emit(event="error", error=f"{e!r}\n{traceback.format_exc()}")
    finally:
        await worker.close()


def _pump_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[bytes]) -> None:
    for line in sys.stdin.buffer:
        loop.call_soon_threadsafe(lines.put_nowait, line)
    loop.call_soon_threadsafe(lines.put_nowait, b"")


if __name__ == "__main__":
    asyncio.run(main())
