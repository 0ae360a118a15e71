"""A benchmark worker process: several ``AsyncAgent``s on one event loop, driven over stdin.

Commands (one JSON object per line on stdin), events (JSON lines on stdout):

    {"cmd": "start", "agents": 25, "first": 0, "servers": ["127.0.0.1:1", ...],
     "app_id": "checkout", "target": "upstream", "method": "work",
     "mode": "cluster" | "local"}
        -> {"event": "ready", "agents": [0, ...]}   every agent holds policies and the breaker
    {"cmd": "trip", "agent": 3, "failures": 5}
        -> {"event": "tripped", "agent": 3, "t": time of the last failing call's completion}
    {"cmd": "call_loop", "upstream": "127.0.0.1:PORT", "interval": 0.02,
     "t0": T, "callers": 50}
        each agent calls once per ``interval`` on an absolute schedule: agent i at
        T + (i / callers + k) x interval (``time.time()``), so the fleet's calls are
        evenly spread (a call that ends after its next slot skips to the one after)
    {"cmd": "stop_calls"}  -> {"event": "calls", "per_agent": {id: {"ok": n, "fail": n, ...}}}
Always: {"event": "state", "agent": id, "from": ..., "to": ..., "t": time.time()}
    stamped by the agent's ``on_state_change`` hook when it happens, written up to
    ``STATES_FLUSH_DELAY`` later, together with the others of that moment

In "local" mode each agent gets the policies one cluster agent fetched, statically
(``AsyncAgent(policies=...)``, no server): per-instance breakers, same policy.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from collections import Counter
from typing import Any

from fusebox.agent import AsyncAgent, BreakerOpenError
from fusebox.agent.events import StateChangeEvent

#: State changes are written this long after the first of a burst (see ``Worker._hook``).
STATES_FLUSH_DELAY = 0.03


class UpstreamFailed(Exception):
    """The upstream answered something other than 2xx."""


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def http_get(host: str, port: int, path: str) -> int:
    """One HTTP/1.0 GET on a new connection; raises UpstreamFailed on a non-2xx status."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /{path} HTTP/1.0\r\nHost: upstream\r\n\r\n".encode())
        status_line = await reader.readline()
        await reader.read()  # the server closes after the body
    finally:
        writer.close()
    status = int(status_line.split()[1])
    if not 200 <= status < 300:
        raise UpstreamFailed(status)
    return status


class Worker:
    def __init__(self) -> None:
        self.agents: dict[int, AsyncAgent] = {}
        self.targets: dict[int, Any] = {}
        self.calls: dict[int, Counter[str]] = {}
        self.loops: list[asyncio.Task[None]] = []
        self.running = False
        self.method = "work"
        self.states: list[dict[str, Any]] = []
        self._states_flush: asyncio.TimerHandle | None = None

    async def start(self, command: dict[str, Any]) -> None:
        servers: list[str] = command["servers"]
        app_id, target, self.method = command["app_id"], command["target"], command["method"]
        static = None
        if command["mode"] == "local":
            async with AsyncAgent(app_id=app_id, server=servers[0]) as fetcher:
                await self._wait(lambda: fetcher.policies is not None
                                 and bool(fetcher.policies.targets), "policies")
                static = fetcher.policies
        first = int(command["first"])
        for i in range(first, first + int(command["agents"])):
            if static is None:
                fb = AsyncAgent(app_id=app_id, server=servers[i % len(servers)],
                                instance_id=f"bench-agent-{i}")
            else:
                fb = AsyncAgent(app_id=app_id, policies=static, instance_id=f"bench-agent-{i}")
            fb.on_state_change(self._hook(i))
            await fb.start()
            self.agents[i] = fb
            self.targets[i] = fb.app(target, method=self.method)
            self.calls[i] = Counter()
        for i, fb in self.agents.items():
            await self._wait(lambda fb=fb: fb.policies is not None and bool(fb.policies.targets),
                             f"policies of agent {i}")
            if static is None:
                # Policies arrive before the link follows the cluster; until it does, a
                # breaker would trip locally (per instance), which is not what is measured.
                await self._wait(lambda fb=fb: _following(fb), f"cluster mode of agent {i}")
            # The first call creates the breaker (lazily); the link then announces interest.
            await self.targets[i].call(_succeed)
        emit(event="ready", agents=list(self.agents))

    def _hook(self, agent: int) -> Any:
        def on_state_change(e: StateChangeEvent) -> None:
            # Stamped now, written later: a JSON line per agent, written while the
            # trip is still reaching the other agents, would compete with them.
            self.states.append({"event": "state", "agent": agent, "t": time.time(),
                                "to": str(e.to_state), "generation": e.generation,
                                "from": str(e.from_state)})
            if self._states_flush is None:
                self._states_flush = asyncio.get_running_loop().call_later(
                    STATES_FLUSH_DELAY, self.flush_states)
        return on_state_change

    def flush_states(self) -> None:
        """Write the state changes stamped since the last flush (one line each)."""
        self._states_flush = None
        states, self.states = self.states, []
        if states:
            sys.stdout.write("".join(json.dumps(s) + "\n" for s in states))
            sys.stdout.flush()

    @staticmethod
    async def _wait(condition: Any, what: str, deadline: float = 30.0) -> None:
        end = time.monotonic() + deadline
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError(f"{what} did not arrive in {deadline}s")
            await asyncio.sleep(0.01)  # poll interval of the condition above

    async def trip(self, agent: int, failures: int) -> None:
        target = self.targets[agent]
        last = 0.0
        for _ in range(failures):
            try:
                await target.call(_fail)
            except UpstreamFailed:
                last = time.time()
        emit(event="tripped", agent=agent, t=last)

    def call_loop(self, upstream: str, interval: float, t0: float, callers: int) -> None:
        host, _, port = upstream.rpartition(":")
        self.running = True
        for i in self.agents:
            first = t0 + interval * i / callers
            self.loops.append(asyncio.create_task(
                self._calls(i, host, int(port), interval, first)))

    async def _calls(self, agent: int, host: str, port: int, interval: float,
                     first: float) -> None:
        # An absolute schedule: agents that sleep a fixed time after each call
        # drift into step with each other (the answers of a burst arrive together)
        # and the fleet's calls come in bursts instead of evenly spread.
        target, counts = self.targets[agent], self.calls[agent]
        due = first
        while self.running:
            await asyncio.sleep(max(0.0, due - time.time()))
            if not self.running:
                break
            try:
                await target.call(http_get, host, port, self.method)
                counts["ok"] += 1
            except BreakerOpenError:
                counts["open"] += 1
            except (UpstreamFailed, OSError):
                counts["fail"] += 1
            due += interval
            now = time.time()
            if due < now:  # a slow call: skip the slots already gone
                due += (now - due) // interval * interval + interval

    async def stop_calls(self) -> None:
        self.running = False
        await asyncio.gather(*self.loops)
        self.loops.clear()
        emit(event="calls", per_agent={i: dict(c) for i, c in self.calls.items()})
        for c in self.calls.values():
            c.clear()

    async def close(self) -> None:
        self.running = False
        await asyncio.gather(*self.loops, return_exceptions=True)
        for fb in self.agents.values():
            await fb.aclose()
        self.agents.clear()


def _following(fb: AsyncAgent) -> bool:
    """Whether the agent's breakers follow the cluster (private state: a benchmark probe)."""
    link = getattr(fb, "_link", None)
    cluster = getattr(link, "cluster", None)
    return bool(getattr(cluster, "following", False))


async def _succeed() -> int:
    return 1


async def _fail() -> int:
    raise UpstreamFailed(500)


async def main() -> None:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    # stdin is read in a thread: the event loop never blocks on it.
    loop.run_in_executor(None, _pump_stdin, loop, lines)
    worker = Worker()
    try:
        while line := await lines.get():
            command = json.loads(line)
            try:
                kind = command["cmd"]
                if kind == "start":
                    await worker.start(command)
                elif kind == "trip":
                    await worker.trip(int(command["agent"]), int(command["failures"]))
                elif kind == "call_loop":
                    worker.call_loop(command["upstream"], float(command["interval"]),
                                     float(command["t0"]), int(command["callers"]))
                elif kind == "stop_calls":
                    await worker.stop_calls()
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
