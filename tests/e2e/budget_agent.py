"""Several service instances in one process, calling an upstream at a set demand rate.

For the fleet budget tests and benchmarks (issue 17): each ``--instance ID=RATE``
is its own ``AsyncAgent`` (own instance id, own stream to the control plane)
on one event loop, calling app ``--target`` (method ``--method``) ``RATE``
times per second on an open-loop schedule (a call is started when due,
whether or not the previous ones ended), each attempt a ``GET /<ID>`` with an
``X-Attempt`` header on a keep-alive connection to ``--upstream``.

    python -m tests.e2e.budget_agent --server ipv4:127.0.0.1:1,127.0.0.1:2 \\
        --upstream 127.0.0.1:8000 --instance a0=30 --instance a1=3 --cache-dir /tmp/c
    python -m tests.e2e.budget_agent --spec spec.yaml ...   (no control plane:
        every instance enforces the policies of that spec alone, per instance)

Commands, one JSON object per line on stdin:

    {"cmd": "go", "t0": T, "duration": D}   call from time.time() T for D seconds
    {"cmd": "rate", "instance": "a0", "rate": 0}   change one instance's demand now
        (ignored by a process that does not run that instance)

Events, one JSON object per line on stdout:

    {"event": "ready", "instances": [...]}   every instance holds policies with targets
    {"event": "second", "instance": ID, "k": k, ...}   what happened in [T + k, T + k + 1)
        (the last second: and whatever the run's calls did after it):
        admitted   attempts that reached the upstream call (first attempts and retries)
        first, retries            the same split by kind
        refused    calls the rate limit refused (RateLimitedError)
        retries_skipped, rate_limited   the agent's own counters (TargetStats), this second
        ok, failed, errors, dropped     calls by result (dropped: not started, too many
                                         in flight)
        late       calls never started: the schedule fell behind (a stalled loop) by more
                   than MAX_CATCH_UP and skipped ahead
        share, pushed_samples, fallback_samples   the rate limit's (else the retry
            budget's) share at the end of the second, and how many of the 20 looks per
            second saw a pushed share or the fallback share
        admit_t    (with --timestamps) each admission's time, seconds from T
    {"event": "done", "seconds": D}   after the last second of a ``go``

Stops when stdin closes, and after ``--max-seconds`` at the latest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from fusebox.agent import AsyncAgent, AsyncTarget, RateLimitedError

#: Looks per second at each instance's share (pushed or fallback).
SHARE_LOOKS = 20
#: A second's line is written this long after it ends, so calls it started can finish.
SECOND_GRACE = 0.3
#: A schedule that fell behind by more than this skips ahead instead of bursting.
MAX_CATCH_UP = 0.1


class UpstreamFailed(Exception):
    """The upstream answered something other than 2xx."""


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class HttpPool:
    """Keep-alive HTTP/1.1 connections to one upstream, shared by the process's instances."""

    def __init__(self, address: str, keep: int = 64) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.keep = host, int(port), keep
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get(self, path: str, attempt: int) -> int:
        reader, writer = (self._idle.pop() if self._idle
                          else await asyncio.open_connection(self.host, self.port))
        try:
            writer.write(f"GET /{path} HTTP/1.1\r\nHost: upstream\r\n"
                         f"X-Attempt: {attempt}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                           if line.lower().startswith("content-length:")), 0)
            if length:
                await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if len(self._idle) < self.keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


class Instance:
    """One service instance: its agent, its demand and what happened, per second."""

    def __init__(self, name: str, rate: float, agent: AsyncAgent, pool: HttpPool,
                 target: AsyncTarget, timestamps: bool, max_in_flight: int) -> None:
        self.name, self.rate, self.agent, self.pool = name, rate, agent, pool
        self.target = target
        self.timestamps = timestamps
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.t0 = 0.0
        self.counts: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self.admit_t: defaultdict[int, list[float]] = defaultdict(list)
        self._stats_seen: Counter[str] = Counter()

    def _second(self, now: float) -> int:
        return math.floor(now - self.t0)

    def count(self, what: str, now: float | None = None) -> None:
        self.counts[self._second(time.time() if now is None else now)][what] += 1

    async def one_call(self) -> None:
        attempts = 0

        async def attempt() -> int:
            nonlocal attempts
            attempts += 1
            now = time.time()
            self.count("admitted", now)
            self.count("first" if attempts == 1 else "retries", now)
            if self.timestamps:
                self.admit_t[self._second(now)].append(round(now - self.t0, 4))
            status = await self.pool.get(self.name, attempts)
            if not 200 <= status <= 399:
                raise UpstreamFailed(status)
            return status

        self.in_flight += 1
        try:
            await self.target.call(attempt)
            self.count("ok")
        except RateLimitedError:
            self.count("refused")
        except UpstreamFailed:
            self.count("failed")
        except Exception:  # a broken connection, a breaker: counted, not fatal
            self.count("errors")
        finally:
            self.in_flight -= 1

    async def run(self, t0: float, end: float, phase: float) -> None:
        """Start calls at ``rate`` per second from ``t0`` until ``end`` (time.time()), the
        first ``phase`` (in [0, 1)) of a period after ``t0``."""
        self.t0 = t0
        tasks: set[asyncio.Task[None]] = set()
        due = t0 + (phase / self.rate if self.rate > 0 else 0.0)
        while True:
            now = time.time()
            if now >= end:
                break
            if self.rate <= 0:
                due = now + 0.05
                await asyncio.sleep(0.05)
                continue
            if due > now:
                await asyncio.sleep(min(due - now, end - now))
                continue
            if now - due > MAX_CATCH_UP:
                self.counts[self._second(now)]["late"] += int((now - due) * self.rate)
                due = now
            if self.in_flight >= self.max_in_flight:
                self.count("dropped", now)
            else:
                task = asyncio.create_task(self.one_call())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            due += 1.0 / self.rate
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    def budget_share(self) -> tuple[float | None, bool]:
        """The share the rate limit (else the retry budget) enforces, and whether pushed."""
        registry = getattr(self.agent, "_budgets", None)
        if registry is None:
            return None, False
        keys = sorted(registry.budgets(), key=lambda k: k.kind.value != "rate-limit")
        if not keys:
            return None, False
        key = keys[0]
        return registry.share(key), key in getattr(registry, "_pushed", {})

    def stats_delta(self) -> Counter[str]:
        """The agent's rate_limited and retries_skipped since the last look."""
        now: Counter[str] = Counter()
        for stats in self.agent.stats().values():
            now["rate_limited"] += stats.rate_limited
            now["retries_skipped"] += stats.retries_skipped
        delta = now - self._stats_seen
        self._stats_seen = now
        return delta


async def watch(instances: list[Instance], t0: float, seconds: int,
                runs: tuple[asyncio.Task[Any], ...]) -> None:
    """Look at the shares SHARE_LOOKS times a second; write each second's line.

    The last second's line waits for ``runs`` (the calls started before the end)
    and also counts what they did after it: retries of the last calls, late answers.
    """
    for k in range(seconds):
        looks: dict[str, Counter[str]] = {i.name: Counter() for i in instances}
        shares: dict[str, float | None] = {}
        for n in range(SHARE_LOOKS):
            await asyncio.sleep(max(0.0, t0 + k + (n + 1) / SHARE_LOOKS - time.time()))
            for instance in instances:
                share, pushed = instance.budget_share()
                shares[instance.name] = share
                if share is not None:
                    looks[instance.name]["pushed_samples" if pushed else "fallback_samples"] += 1
        stats = {i.name: i.stats_delta() for i in instances}
        await asyncio.sleep(max(0.0, t0 + k + 1 + SECOND_GRACE - time.time()))
        last = k == seconds - 1
        if last:
            await asyncio.gather(*runs)
        for instance in instances:
            counts = instance.counts.pop(k, Counter())
            for later in [j for j in instance.counts if last and j > k]:
                counts += instance.counts.pop(later)
                instance.admit_t[k] += instance.admit_t.pop(later, [])
            line: dict[str, Any] = {
                "event": "second", "instance": instance.name, "k": k, "rate": instance.rate,
                "share": shares[instance.name], **looks[instance.name],
                **{key: counts.get(key, 0) for key in (
                    "admitted", "first", "retries", "refused", "ok", "failed", "errors",
                    "dropped", "late")},
                **{key: stats[instance.name].get(key, 0)
                   for key in ("rate_limited", "retries_skipped")},
            }
            if instance.timestamps:
                line["admit_t"] = instance.admit_t.pop(k, [])
            emit(**line)


def static_policies(spec: Path, app_id: str) -> Any:
    from fusebox.controlplane.resolve import resolve_policies
    from fusebox.controlplane.spec import parse_documents

    documents = parse_documents(spec.read_text(), str(spec))
    return resolve_policies([d.spec for d in documents], "default", app_id)


def instance_arg(text: str) -> tuple[str, float]:
    name, _, rate = text.partition("=")
    return name, float(rate)


async def amain(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(commands.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(commands.put_nowait, None)

    threading.Thread(target=read_stdin, daemon=True).start()
    pool = HttpPool(args.upstream)
    options: dict[str, Any] = {"app_id": args.app_id, "report_interval": args.report_interval}
    if args.spec is not None:
        options["policies"] = static_policies(args.spec, args.app_id)
    else:
        options["server"] = args.server
    agents: list[tuple[str, float, AsyncAgent]] = []
    for name, rate in args.instance:
        cache = str(args.cache_dir / f"cache-{name}.pb") if args.cache_dir else None
        agents.append((name, rate, AsyncAgent(instance_id=name, cache_path=cache, **options)))
    await asyncio.gather(*(agent.start() for _, _, agent in agents))
    try:
        deadline = time.monotonic() + args.max_seconds
        while not all(a.policies is not None and a.policies.targets for _, _, a in agents):
            if time.monotonic() > deadline:
                emit(event="error", error="policies never arrived")
                return 1
            await asyncio.sleep(0.02)
        instances = [Instance(name, rate, agent, pool,
                              agent.app(args.target, method=args.method), args.timestamps,
                              args.max_in_flight)
                     for name, rate, agent in agents]
        by_name = {i.name: i for i in instances}
        emit(event="ready", instances=list(by_name))
        running: list[asyncio.Task[Any]] = []
        while True:
            remaining = deadline - time.monotonic()
            try:
                command = await asyncio.wait_for(commands.get(), timeout=max(0.01, remaining))
            except TimeoutError:
                command = None
            if command is None:
                break
            if command["cmd"] == "go":
                t0, duration = float(command["t0"]), float(command["duration"])
                seconds = math.ceil(duration)
                # Each instance's phase comes from its name, so the fleet's calls are
                # spread evenly over time whichever process runs which instance.
                running = [asyncio.create_task(
                               i.run(t0, t0 + duration, random.Random(i.name).random()))
                           for i in instances]

                async def finish(t0: float = t0, seconds: int = seconds,
                                 runs: tuple[asyncio.Task[Any], ...] = tuple(running)) -> None:
                    await watch(instances, t0, seconds, runs)
                    emit(event="done", seconds=seconds)

                running.append(asyncio.create_task(finish()))
            elif command["cmd"] == "rate" and command["instance"] in by_name:
                by_name[command["instance"]].rate = float(command["rate"])
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        return 0
    finally:
        pool.close()
        await asyncio.gather(*(agent.aclose() for _, _, agent in agents),
                             return_exceptions=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--server")
    where.add_argument("--spec", type=Path)
    parser.add_argument("--upstream", required=True, help="host:port of the upstream")
    parser.add_argument("--instance", type=instance_arg, action="append", required=True,
                        metavar="ID=RATE")
    parser.add_argument("--app-id", default="checkout")
    parser.add_argument("--target", default="upstream")
    parser.add_argument("--method", default="work")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--timestamps", action="store_true")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--report-interval", type=float, default=0.01)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    return asyncio.run(amain(args))


if __name__ == "__main__":
    raise SystemExit(main())
