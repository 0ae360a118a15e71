"""A benchmark worker process for ``bench.fleet_trip``: one agent at a time, driven over stdin.

Commands (one JSON object per line on stdin), events (JSON lines on stdout):

    {"cmd": "loop", "api": "sync" | "async", "mode": "cluster" | "local",
     "server": "127.0.0.1:P", "method": "loop-0", "calls": 10000, "instance": "..."}
        -> {"event": "loop", "reached": n, "rejected": n, "first_rejected": i | null}
        a fresh agent (sync ``Agent`` or ``AsyncAgent``) calls a callable that fails at
        once, ``calls`` times in a plain loop; ``reached`` counts the calls that got to
        it. "local": the agent holds, statically, the policies the server resolved.
    {"cmd": "start", "mode": "cluster" | "local", "server": ..., "method": "paced",
     "instance": "..."}
        -> {"event": "ready"}  a sync ``Agent`` holding the breaker (one successful call)
    {"cmd": "paced", "t0": T, "slot": k, "every": 4, "interval": 0.002, "calls": n}
        -> {"event": "paced", "calls": [[n, t, "failed" | "rejected"], ...]}
        the fleet's calls are ``interval`` apart from ``T`` (``time.time()``), taking
        turns: this agent makes calls k, k + every, k + 2 every, ... (failing at once)
    {"cmd": "wait_closed"} -> {"event": "closed_state"}  the breaker is closed again
    {"cmd": "close"} -> {"event": "closed"}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError, BreakerState, ResolvedPolicies

APP_ID = "checkout"
TARGET = "upstream"
READY_DEADLINE = 30.0


class UpstreamDown(ConnectionError):
    """What the dead upstream raises, at once (no I/O)."""


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def wait(condition: Callable[[], bool], what: str, deadline: float = READY_DEADLINE) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"{what} did not happen in {deadline}s")
        time.sleep(0.005)  # poll interval of the condition above


def following(fb: Agent | AsyncAgent) -> bool:
    """Whether the agent's breakers follow the cluster (private state: a benchmark probe)."""
    cluster = getattr(getattr(fb, "_link", None), "cluster", None)
    return bool(getattr(cluster, "following", False))


def has_policies(fb: Agent | AsyncAgent) -> bool:
    return fb.policies is not None and bool(fb.policies.targets)


def fetch_policies(server: str) -> ResolvedPolicies:
    """The policies the server resolves for the app (what a per-instance agent holds)."""
    with Agent(app_id=APP_ID, server=server, cluster_breakers=False) as fetcher:
        wait(lambda: has_policies(fetcher), "policies")
        assert fetcher.policies is not None
        return fetcher.policies


def new_agent(api: str, command: dict[str, Any]) -> Agent | AsyncAgent:
    options: dict[str, Any] = {"app_id": APP_ID, "instance_id": command["instance"]}
    if command["mode"] == "local":
        options["policies"] = fetch_policies(command["server"])
    else:
        options["server"] = command["server"]
    return Agent(**options) if api == "sync" else AsyncAgent(**options)


class Dead:
    """The dead upstream: every attempt fails at once; attempts are counted."""

    def __init__(self) -> None:
        self.attempts = 0

    def __call__(self) -> None:
        self.attempts += 1
        raise UpstreamDown("upstream down")

    async def coroutine(self) -> None:
        self()  # raises before it awaits anything, like a refused connection


def loop_sync(command: dict[str, Any]) -> dict[str, Any]:
    fb = new_agent("sync", command)
    assert isinstance(fb, Agent)
    with fb:
        if command["mode"] == "cluster":
            wait(lambda: has_policies(fb) and following(fb), "cluster mode")
        target = fb.app(TARGET, method=command["method"])
        dead = Dead()
        rejected, first = 0, None
        for i in range(int(command["calls"])):
            try:
                target.call(dead)
            except BreakerOpenError:
                rejected += 1
                first = i if first is None else first
            except UpstreamDown:
                pass
    return {"reached": dead.attempts, "rejected": rejected, "first_rejected": first}


async def loop_async(command: dict[str, Any]) -> dict[str, Any]:
    fb = new_agent("async", command)
    assert isinstance(fb, AsyncAgent)
    async with fb:
        if command["mode"] == "cluster":
            end = time.monotonic() + READY_DEADLINE
            while not (has_policies(fb) and following(fb)):
                if time.monotonic() > end:
                    raise TimeoutError("cluster mode did not happen")
                await asyncio.sleep(0.005)
        target = fb.app(TARGET, method=command["method"])
        dead = Dead()
        rejected, first = 0, None
        for i in range(int(command["calls"])):
            try:
                await target.call(dead.coroutine)
            except BreakerOpenError:
                rejected += 1
                first = i if first is None else first
            except UpstreamDown:
                pass
    return {"reached": dead.attempts, "rejected": rejected, "first_rejected": first}


class Paced:
    """One sync agent of the paced fleet (see the module docstring)."""

    def __init__(self, command: dict[str, Any]) -> None:
        fb = new_agent("sync", command)
        assert isinstance(fb, Agent)
        self.fb = fb.start()
        if command["mode"] == "cluster":
            wait(lambda: has_policies(fb) and following(fb), "cluster mode")
        self.target = fb.app(TARGET, method=command["method"])
        self.target.call(lambda: 1)  # creates the breaker; the link announces its interest

    def calls(self, t0: float, slot: int, every: int, interval: float,
              count: int) -> list[tuple[int, float, str]]:
        dead = Dead()
        made: list[tuple[int, float, str]] = []
        for n in range(slot, count, every):
            due = t0 + n * interval
            while (left := due - time.time()) > 0:
                time.sleep(left)
            at = time.time()
            try:
                self.target.call(dead)
            except BreakerOpenError:
                made.append((n, at, "rejected"))
            except UpstreamDown:
                made.append((n, at, "failed"))
        return made

    def wait_closed(self) -> None:
        name = next(iter(self.fb.breaker_states()))
        wait(lambda: self.fb.breaker_states()[name] is BreakerState.CLOSED, "closed again")


def main() -> None:
    paced: Paced | None = None
    try:
        for line in sys.stdin:
            command = json.loads(line)
            try:
                kind = command["cmd"]
                if kind == "loop":
                    counts = (loop_sync(command) if command["api"] == "sync"
                              else asyncio.run(loop_async(command)))
                    emit(event="loop", **counts)
                elif kind == "start":
                    paced = Paced(command)
                    emit(event="ready")
                elif kind == "paced":
                    assert paced is not None
                    made = paced.calls(float(command["t0"]), int(command["slot"]),
                                       int(command["every"]), float(command["interval"]),
                                       int(command["calls"]))
                    emit(event="paced", calls=made)
                elif kind == "wait_closed":
                    assert paced is not None
                    paced.wait_closed()
                    emit(event="closed_state")
                elif kind == "close":
                    if paced is not None:
                        paced.fb.close()
                        paced = None
                    emit(event="closed")
            except Exception as e:
                emit(event="error", error=f"{e!r}\n{traceback.format_exc()}")
    finally:
        if paced is not None:
            paced.fb.close()


if __name__ == "__main__":
    main()
