"""Soak: steady load with periodic trips, probes and spec changes; memory and leaks checked.

Topology as ``bench.many_agents`` (loopback, self-cleaning, bounded): one
redis-server, ``--replicas`` replicas, ``--workers`` x ``--agents-per-worker``
AsyncAgents calling a healthy upstream every ``--interval`` s. Every
``--period`` s a cycle runs: a spec change every agent applies; a trip of the
``upstream:trip`` breaker (open timeout 1 s) seen by every agent; the server
moves it to half-open; a handful of agents on different workers race for
probe leases (``maxRequests: 2``) until it closes.

A sampler records every ``--sample`` s: each replica's RSS and connected agents
(sessions), and in Redis (SCAN): breaker state keys, lease hashes and their
live/expired entries, deadline-zset entries, stream lengths.

Verdict (printed; exit status 1 on FAIL): each replica's RSS slope over the
second half of the run below ``--max-slope`` MiB/min; the number of breakers
constant; after the agents stop and one lease TTL passes, no lease entries
left (live or expired) and zero sessions on every replica.

    python -m bench.soak --minutes 10        # the real soak (optional in CI)
    python -m bench.soak --minutes 1         # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import redis as redis_py

from bench.cluster_support import (
    Cleanup,
    ServeProcess,
    apply_spec,
    dump_json,
    get_breaker,
    machine_line,
    start_redis,
    time_bound,
    verdict,
)
from bench.many_agents import TRIP_KEY, Fleet
from bench.scale_support import TRIP_THRESHOLD, HttpUpstream, rss_bytes, scale_spec
from fusebox.v1 import breaker_pb2

LEASE_TTL = 2.0  # ServerConfig.lease_ttl default: what `fusebox serve` runs with
CYCLE_DEADLINE = 30.0
MiB = 1024 * 1024
HALF_OPEN = breaker_pb2.BREAKER_STATE_HALF_OPEN
CLOSED = breaker_pb2.BREAKER_STATE_CLOSED


def spec(version: int) -> str:
    return scale_spec(5 + version % 2, breaker_timeout="1s", max_requests=2)


def redis_counts(client: redis_py.Redis) -> dict[str, int]:
    """Breakers, leases (hashes, live and expired entries), deadlines, stream entries."""
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    counts = {"breakers": 0, "lease_keys": 0, "leases_live": 0, "leases_expired": 0,
              "deadlines": 0, "stream_entries": 0}
    for key in client.scan_iter(match="fusebox:*", count=1000):
        name = key.decode()
        if ":state:" in name:
            counts["breakers"] += 1
        elif ":leases:" in name:
            counts["lease_keys"] += 1
            for expiry in client.hvals(key):
                counts["leases_live" if int(expiry) >= now_ms else "leases_expired"] += 1
        elif name.endswith(":deadlines"):
            counts["deadlines"] += client.zcard(key)
        elif name.endswith(":events"):
            counts["stream_entries"] += client.xlen(key)
    return counts


class Sampler(threading.Thread):
    def __init__(self, servers: list[ServeProcess], client: redis_py.Redis,
                 every: float) -> None:
        super().__init__(daemon=True)
        self.servers, self.client, self.every = servers, client, every
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.done = threading.Event()

    def sample(self) -> dict[str, Any]:
        return {"t": time.monotonic() - self.started,
                "rss_mib": [rss_bytes(s.process.pid) / MiB for s in self.servers],
                "sessions": [s.metric("fusebox_connected_agents") for s in self.servers],
                **redis_counts(self.client)}

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.samples.append(self.sample())


def cycle(n: int, fleet: Fleet, address: str, agents: int, per_worker: int) -> dict[str, Any]:
    """One spec change, one trip, half-open probes until closed."""
    fleet.send_all(cmd="arm", kind="digest")
    fleet.gather({"armed": len(fleet.workers)}, CYCLE_DEADLINE)
    apply_spec(address, spec(n + 1))
    fleet.gather({"round": len(fleet.workers)}, CYCLE_DEADLINE)

    tripper = (n * 37 + 11) % agents
    fleet.send_all(cmd="arm", kind="open")
    fleet.gather({"armed": len(fleet.workers)}, CYCLE_DEADLINE)
    fleet.workers[f"w{tripper // per_worker}"].send(cmd="trip", agent=tripper,
                                                    failures=TRIP_THRESHOLD)
    fleet.gather({"round": len(fleet.workers), "tripped": 1}, CYCLE_DEADLINE)

    end = time.monotonic() + CYCLE_DEADLINE
    while get_breaker(address, TRIP_KEY).state != HALF_OPEN:  # the server's timer moves it
        assert time.monotonic() < end, "the trip breaker never went half-open"
        time.sleep(0.05)  # poll interval of the condition above
    probes = {"ok": 0, "rejected": 0}
    while get_breaker(address, TRIP_KEY).state != CLOSED:
        assert time.monotonic() < end, "probes never closed the trip breaker"
        for w, worker in enumerate(fleet.workers.values()):
            worker.send(cmd="probe", agents=[w * per_worker + (n + k) % per_worker
                                             for k in range(3)])
        for event in fleet.gather({"probed": len(fleet.workers)}, CYCLE_DEADLINE)["probed"]:
            probes["ok"] += event["ok"]
            probes["rejected"] += event["rejected"]
    return probes


def slope_mib_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    if len(points) < 2:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    mv = sum(v for _, v in points) / len(points)
    var = sum((t - mt) ** 2 for t, _ in points)
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / var if var else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    agents = args.workers * args.agents_per_worker
    with Cleanup() as cleanup:
        redis = start_redis(cleanup)
        client = redis_py.Redis(host="127.0.0.1", port=redis.port)
        servers = [ServeProcess(cleanup, store_url=redis.url, name=f"replica{n}")
                   for n in range(args.replicas)]
        apply_spec(servers[0].address, spec(0))
        upstream = HttpUpstream(cleanup)
        fleet = Fleet(cleanup, args.workers)
        for n, worker in enumerate(fleet.workers.values()):
            worker.send(cmd="start", agents=args.agents_per_worker,
                        first=n * args.agents_per_worker,
                        servers=[s.address for s in servers], busy=args.busy,
                        cache_dir=fleet.cache_dir)
        fleet.gather({"ready": len(fleet.workers)}, 300.0)
        fleet.send_all(cmd="traffic", upstream=upstream.address, interval=args.interval)
        sampler = Sampler(servers, client, args.sample)
        first = sampler.sample()
        sampler.start()
        cycles, probes = 0, {"ok": 0, "rejected": 0}
        end = time.monotonic() + args.minutes * 60
        while time.monotonic() < end:
            started = time.monotonic()
            for k, v in cycle(cycles, fleet, servers[0].address, agents,
                              args.agents_per_worker).items():
                probes[k] += v
            cycles += 1
            time.sleep(max(0.0, min(args.period - (time.monotonic() - started),
                                    end - time.monotonic())))
        sampler.done.set()
        sampler.join()
        fleet.send_all(cmd="stop_traffic")
        traffic = fleet.gather({"traffic": len(fleet.workers)}, CYCLE_DEADLINE)["traffic"]
        fleet.send_all(cmd="close")
        fleet.gather({"closed": len(fleet.workers)}, 120.0)
        for worker in fleet.workers.values():
            worker.stop()
        # Sessions end with the agents; leases end one TTL after their last use at most.
        deadline = time.monotonic() + 15.0
        while (any(s.metric("fusebox_connected_agents") for s in servers)
               and time.monotonic() < deadline):
            time.sleep(0.1)  # poll interval of the condition above
        time.sleep(LEASE_TTL + 0.5)  # let the last leases reach their expiry
        final = sampler.sample()
    return {"minutes": args.minutes, "agents": agents, "replicas": args.replicas,
            "cycles": cycles, "probes": probes, "first": first, "final": final,
            "samples": sampler.samples, "calls_ok": sum(e["ok"] for e in traffic),
            "calls_other": [e["other"] for e in traffic if e["other"]],
            "max_slope": args.max_slope, "busy": args.busy}


def judge(r: dict[str, Any]) -> dict[str, bool]:
    samples, final = r["samples"], r["final"]
    half = samples[-1]["t"] / 2 if samples else 0.0
    late = [s for s in samples if s["t"] >= half]
    r["rss_slope"] = [slope_mib_per_min([(s["t"], s["rss_mib"][n]) for s in late])
                      for n in range(r["replicas"])]
    expected_breakers = r["busy"] + 1  # the traffic breakers and the trip breaker
    return {
        "memory flat": all(s < r["max_slope"] for s in r["rss_slope"]),
        "breakers constant": all(s["breakers"] == expected_breakers for s in samples)
        and final["breakers"] == expected_breakers,
        "no leases left": final["leases_live"] == 0 and final["leases_expired"] == 0,
        "no sessions left": not any(final["sessions"]),
        "traffic unharmed": not r["calls_other"],
    }


def report(r: dict[str, Any], checks: dict[str, bool]) -> None:
    print(f"Fusebox soak: {r['minutes']} min, {r['agents']} agents, {r['replicas']} replicas")
    print(machine_line())
    print(f"cycles: {r['cycles']} (spec change + trip + half-open probes); probe calls "
          f"{r['probes']['ok']} admitted, {r['probes']['rejected']} refused (no lease); "
          f"calls {r['calls_ok']} ok")
    print(f"{'t (s)':>6} {'RSS MiB per replica':>26} {'sessions':>12} {'breakers':>8} "
          f"{'leases live/expired':>19} {'deadlines':>9} {'stream':>7}")
    for s in [r["first"], *r["samples"], r["final"]]:
        rss = " ".join(f"{v:6.1f}" for v in s["rss_mib"])
        sessions = "/".join(f"{v:.0f}" for v in s["sessions"])
        print(f"{s['t']:6.0f} {rss:>26} {sessions:>12} {s['breakers']:8} "
              f"{s['leases_live']:>9}/{s['leases_expired']:<9} {s['deadlines']:9} "
              f"{s['stream_entries']:7}")
    slopes = ", ".join(f"{v:+.2f}" for v in r["rss_slope"])
    print(f"RSS slope over the second half (MiB/min): {slopes} (limit {r['max_slope']})")
    for name, ok in checks.items():
        print(f"  {verdict(ok)}  {name}")
    print(f"verdict: {verdict(all(checks.values()))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--agents-per-worker", type=int, default=100)
    parser.add_argument("--busy", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--period", type=float, default=10.0, help="seconds per cycle")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--max-slope", type=float, default=1.0,
                        help="allowed RSS growth over the second half, MiB/min")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    bound = int(args.minutes * 60 + 600)  # startup, the last cycle and cleanup included

    with time_bound(bound, "the soak's bound"):
        result = run(args)
    checks = judge(result)
    report(result, checks)
    dump_json(args.json, {**result, "checks": checks})
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
