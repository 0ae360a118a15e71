"""Ingest: outcome reports one ``fusebox serve`` replica sustains, and what Redis pays for them.

One replica (a real ``fusebox serve`` process, embedded store, then Redis store
on a private redis-server) receives ``OutcomeReport`` messages from a load
generator (``bench._ingest_load``: raw gRPC clients speaking the AgentService
protocol, one Connect stream and HTTP/2 connection per simulated agent, one
breaker entry of 10 outcomes per message, as fast as flow control allows).

The generator competes for the same 2 CPUs: it is pinned to CPU 1 (by default;
``--generator-cpus``), the server and redis-server are not pinned. Every figure
is the server's own count (its Prometheus counters), sampled after the agents
connected and a warm-up, over ``--seconds``; CPU use per process comes from
``/proc``. Redis load is ``INFO stats`` ``total_commands_processed`` (and
``EVALSHA`` calls from ``INFO commandstats``) over the same window, with the
idle background (timers: half-open advance, stream tail, health) measured
before the load and shown apart.

Points: embedded 100 agents x 100 breakers; Redis 100 agents x {1, 10, 100}
breakers, and 10 agents x 10 breakers (same breakers, 10x fewer agents).

    python -m bench.ingest [--quick] [--seconds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.cluster_support import (
    Cleanup,
    ServeProcess,
    apply_spec,
    cpu_seconds,
    dump_json,
    machine_line,
    spawn,
    start_redis,
    stop_process,
    verdict,
)
from tests.support.redis_server import RedisServer

TARGET_MESSAGES = 20_000
CONNECT_DEADLINE = 60.0
SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: bench-ingest
scopes: [checkout]
spec:
  policies:
    circuitBreakers:
      shared:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures >= 5
  targets:
    apps:
      upstream:
        circuitBreaker: shared
"""


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    reports: float
    outcomes: float
    ticks: float
    rejected: float
    server_cpu: float
    redis_cpu: float
    redis_commands: int
    redis_evalsha: int


def redis_counters(redis: RedisServer | None) -> tuple[int, int]:
    if redis is None:
        return 0, 0
    stats = redis.command("INFO", "stats")
    total = next(int(line.split(":")[1]) for line in stats.splitlines()
                 if line.startswith("total_commands_processed:"))
    evalsha = 0
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_evalsha:"):
            evalsha = int(line.split("calls=")[1].split(",")[0])
    return total, evalsha


def sample(server: ServeProcess, redis: RedisServer | None, redis_pid: int | None) -> Sample:
    commands, evalsha = redis_counters(redis)
    return Sample(
        at=time.monotonic(),
        reports=server.metric("fusebox_reports_ingested_total"),
        outcomes=server.metric("fusebox_outcomes_ingested_total"),
        ticks=server.metric("fusebox_report_apply_seconds_count"),
        rejected=server.metric("fusebox_reports_rejected_total"),
        server_cpu=cpu_seconds(server.process.pid),
        redis_cpu=cpu_seconds(redis_pid) if redis_pid else 0.0,
        redis_commands=commands, redis_evalsha=evalsha,
    )


def rates(a: Sample, b: Sample) -> dict[str, float]:
    span = b.at - a.at
    return {
        "seconds": span,
        "messages_per_s": (b.reports - a.reports) / span,
        "outcomes_per_s": (b.outcomes - a.outcomes) / span,
        "apply_ticks_per_s": (b.ticks - a.ticks) / span,
        "rejected": b.rejected - a.rejected,
        "server_cpu": (b.server_cpu - a.server_cpu) / span,
        "redis_cpu": (b.redis_cpu - a.redis_cpu) / span,
        "redis_commands_per_s": (b.redis_commands - a.redis_commands) / span,
        "redis_evalsha_per_s": (b.redis_evalsha - a.redis_evalsha) / span,
    }


def measure_point(args: argparse.Namespace, cleanup: Cleanup, server: ServeProcess,
                  redis: RedisServer | None, redis_pid: int | None,
                  agents: int, breakers: int) -> dict[str, Any]:
    before_agents = server.metric("fusebox_connected_agents")
    generators = []
    per_generator = -(-agents // args.generators)
    for g in range(args.generators):
        count = min(per_generator, agents - g * per_generator)
        if count <= 0:
            break
        process = spawn([sys.executable, "-m", "bench._ingest_load", "--server", server.address,
                         "--agents", str(count), "--first", str(g * per_generator),
                         "--breakers", str(breakers), "--seconds", "600"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.sched_setaffinity(process.pid, args.generator_cpus)
        cleanup.push(functools.partial(stop_process, process, timeout=5))
        generators.append(process)
    try:
        end = time.monotonic() + CONNECT_DEADLINE
        while server.metric("fusebox_connected_agents") < before_agents + agents:
            for p in generators:
                if p.poll() is not None:
                    assert p.stderr is not None
                    raise RuntimeError(f"load generator exited: {p.stderr.read().decode()}")
            if time.monotonic() > end:
                raise TimeoutError(f"{agents} agents did not connect in {CONNECT_DEADLINE}s")
            time.sleep(0.05)  # poll interval of the connected-agents gauge
        time.sleep(args.warmup)
        generator_cpu_0 = sum(cpu_seconds(p.pid) for p in generators)
        first = sample(server, redis, redis_pid)
        time.sleep(args.seconds)
        last = sample(server, redis, redis_pid)
        generator_cpu = (sum(cpu_seconds(p.pid) for p in generators) - generator_cpu_0) / (
            last.at - first.at)
    finally:
        for p in generators:
            stop_process(p, timeout=5)
    # The next point starts with the previous sessions gone.
    end = time.monotonic() + CONNECT_DEADLINE
    while server.metric("fusebox_connected_agents") > before_agents:
        if time.monotonic() > end:
            raise TimeoutError("the load generator's streams never closed on the server")
        time.sleep(0.05)  # poll interval of the connected-agents gauge
    return {"agents": agents, "breakers": breakers, **rates(first, last),
            "generator_cpu": generator_cpu}


def idle_background(server: ServeProcess, redis: RedisServer, redis_pid: int,
                    seconds: float) -> dict[str, float]:
    first = sample(server, redis, redis_pid)
    time.sleep(seconds)
    return rates(first, sample(server, redis, redis_pid))


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"generator_cpus": sorted(args.generator_cpus),
                               "seconds": args.seconds}
    with Cleanup() as cleanup:
        print("embedded store ...", file=sys.stderr)
        embedded = ServeProcess(cleanup, name="embedded")
        apply_spec(embedded.address, SPEC)
        results["embedded"] = [measure_point(args, cleanup, embedded, None, None, 100, 100)]
        stop_process(embedded.process)

        print("redis store ...", file=sys.stderr)
        redis = start_redis(cleanup)
        assert redis._process is not None
        redis_pid = redis._process.pid
        server = ServeProcess(cleanup, store_url=redis.url, name="redis")
        apply_spec(server.address, SPEC)
        results["redis_idle"] = idle_background(server, redis, redis_pid, 1.0)
        points = [(100, 100), (100, 10), (100, 1), (10, 10)]
        if args.quick:
            points = [(100, 100), (10, 10)]
        results["redis"] = [measure_point(args, cleanup, server, redis, redis_pid, a, b)
                            for a, b in points]
    best = max(p["messages_per_s"] for p in results["embedded"] + results["redis"])
    results["pass_embedded"] = results["embedded"][0]["messages_per_s"] >= TARGET_MESSAGES
    results["pass_redis"] = results["redis"][0]["messages_per_s"] >= TARGET_MESSAGES
    results["best_messages_per_s"] = best
    return results


def report(r: dict[str, Any]) -> None:
    print("Fusebox ingest: OutcomeReport messages one fusebox serve replica sustains")
    print(machine_line())
    print(f"load: raw gRPC Connect streams, 1 breaker entry x 10 outcomes per message, "
          f"generator pinned to CPU {','.join(map(str, r['generator_cpus']))}; "
          f"{r['seconds']:.0f} s per point")
    print(f"  {'store':9} {'agents':>6} {'busy brk':>8} {'msgs/s':>8} {'outcomes/s':>10} "
          f"{'ticks/s':>7} {'redis cmd/s':>11} {'evalsha/s':>9} {'cmd/tick':>8} "
          f"{'CPU srv':>7} {'gen':>5} {'redis':>5}")
    idle = r.get("redis_idle", {})
    for store in ("embedded", "redis"):
        for p in r[store]:
            commands = p["redis_commands_per_s"] - idle.get("redis_commands_per_s", 0.0)
            per_tick = commands / p["apply_ticks_per_s"] if p["apply_ticks_per_s"] else 0.0
            evalsha = p["redis_evalsha_per_s"] - idle.get("redis_evalsha_per_s", 0.0)
            redis_cols = (f"{commands:11.0f} {evalsha:9.0f} {per_tick:8.1f}"
                          if store == "redis" else f"{'-':>11} {'-':>9} {'-':>8}")
            print(f"  {store:9} {p['agents']:6d} {p['breakers']:8d} {p['messages_per_s']:8.0f} "
                  f"{p['outcomes_per_s']:10.0f} {p['apply_ticks_per_s']:7.0f} {redis_cols} "
                  f"{p['server_cpu']:7.2f} {p['generator_cpu']:5.2f} {p['redis_cpu']:5.2f}")
    if idle:
        print(f"  redis idle background (no agents): {idle['redis_commands_per_s']:.0f} "
              f"commands/s ({idle['redis_evalsha_per_s']:.0f} EVALSHA/s), subtracted above")
    print("  CPU columns: cores used (1.00 = one core busy) by the server, the generator, redis")
    for store, key in (("embedded", "pass_embedded"), ("redis", "pass_redis")):
        figure = r[store][0]["messages_per_s"]
        print(f"  {verdict(r[key])}  {store} store, 100 agents x 100 breakers: {figure:,.0f} "
              f"messages/s  target >= {TARGET_MESSAGES:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--generators", type=int, default=1, help="load generator processes")
    parser.add_argument("--generator-cpus", default="1",
                        help="CPUs the generator may use (comma-separated)")
    parser.add_argument("--quick", action="store_true", help="1 s points, fewer of them")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    args.generator_cpus = {int(c) for c in args.generator_cpus.split(",")}
    if args.quick:
        args.seconds, args.warmup = 1.0, 0.5
    result = run(args)
    report(result)
    dump_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
