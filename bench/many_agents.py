"""A thousand agents: push latency, CPU and memory of the control plane at fleet scale.

Topology (all on 127.0.0.1, every process stopped at the end, bounded by
``--max-seconds``): one redis-server, ``--replicas`` ``fusebox serve`` replicas
on it, ``--workers`` processes each holding ``agents / workers`` AsyncAgents
(one Connect stream each, agent *i* on replica *i mod replicas*), and one asyncio
HTTP upstream process. Every agent holds two breakers of one spec: a traffic
breaker ``upstream:work{i mod busy}`` (``--busy`` busy breakers) and the trip
breaker ``upstream:trip``.

Phases:
1. connect: every agent follows the cluster; replica RSS before/after -> bytes/agent.
2. traffic: every agent calls the upstream through ``fb.app(...).call`` every
   ``--interval`` s; CPU per process and report messages/s over ``--window`` s.
3. spec rounds (traffic on): re-apply the spec with a changed timeout; latency from
   the ApplySpec RPC's return to each agent's policies changing (digest), across
   processes with ``time.time()`` on one machine. Figure per round: the last agent.
4. trip rounds (traffic on): one agent makes 5 failing calls; latency from the
   crossing failure to each agent's trip breaker being open (rejecting locally).
   ``ResetBreaker`` between rounds. Round 0 of 3 and 4 is a warm-up.
5. baseline (after everything above is stopped): ``bench.grpc_fanout`` with the same
   topology (``agents`` streams, ``replicas`` servers, ``workers`` client processes,
   ``rounds`` rounds): raw grpc.aio pushing one message to every stream, no Fusebox
   code and no traffic; the transport's floor on this machine, printed next to the
   trip figures. ``--no-baseline`` skips it.

    python -m bench.many_agents [--agents 1000] [--workers 4] [--replicas 3] [--quick]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import time
from collections import defaultdict
from typing import Any

from bench import grpc_fanout
from bench.cluster_support import (
    Cleanup,
    ServeProcess,
    WorkerProcess,
    apply_spec,
    dump_json,
    machine_line,
    next_shared_event,
    percentile,
    reset_breaker,
    start_redis,
    time_bound,
    verdict,
)
from bench.scale_support import (
    TRIP_THRESHOLD,
    CpuWindow,
    HttpUpstream,
    ScaleWorker,
    rss_bytes,
    scale_spec,
)
from fusebox.v1 import policy_pb2

SPEC_TARGET_P99_MS = 500.0
TRIP_TARGET_P99_MS = 100.0
TRIP_KEY = policy_pb2.BreakerKey(namespace="default", spec="bench-scale",
                                 kind=policy_pb2.TARGET_KIND_APP, target="upstream",
                                 method="trip")
READY_DEADLINE = 300.0
ROUND_DEADLINE = 30.0
MiB = 1024 * 1024


class Fleet:
    """The workers, and waiting for their events."""

    def __init__(self, cleanup: Cleanup, workers: int) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.cache_dir = str(cleanup.workdir / "agent-cache")
        self.workers: dict[str, WorkerProcess] = {
            f"w{n}": ScaleWorker(cleanup, f"w{n}", events=self.events) for n in range(workers)}

    def send_all(self, **command: Any) -> None:
        for worker in self.workers.values():
            worker.send(**command)

    def gather(self, wanted: dict[str, int], deadline: float) -> dict[str, list[dict[str, Any]]]:
        """Events until ``wanted[kind]`` of each kind arrived (others are dropped)."""
        got: dict[str, list[dict[str, Any]]] = defaultdict(list)
        end = time.monotonic() + deadline
        while any(len(got[k]) < n for k, n in wanted.items()):
            try:
                event = next_shared_event(self.events, self.workers, end)
            except TimeoutError:
                have = {k: len(got[k]) for k in wanted}
                raise TimeoutError(f"waited for {wanted}, got {have}") from None
            got[event["event"]].append(event)
        return got


def connect(args: argparse.Namespace, fleet: Fleet, servers: list[ServeProcess]) -> float:
    per_worker = args.agents // args.workers
    started = time.monotonic()
    for n, worker in enumerate(fleet.workers.values()):
        worker.send(cmd="start", agents=per_worker, first=n * per_worker,
                    servers=[s.address for s in servers], busy=args.busy,
                    cache_dir=fleet.cache_dir)
    fleet.gather({"ready": len(fleet.workers)}, READY_DEADLINE)
    return time.monotonic() - started


def spec_rounds(args: argparse.Namespace, fleet: Fleet, address: str) -> list[list[float]]:
    rounds = []
    for r in range(args.rounds + 1):
        fleet.send_all(cmd="arm", kind="digest")
        fleet.gather({"armed": len(fleet.workers)}, ROUND_DEADLINE)
        apply_spec(address, scale_spec(6 + r % 2))
        returned = time.time()
        got = fleet.gather({"round": len(fleet.workers)}, ROUND_DEADLINE)
        stamps = [t for event in got["round"] for t in event["t"]]
        if r:  # round 0 warms up
            rounds.append([(t - returned) * 1000 for t in stamps])
        _progress(args, f"spec round {r}: last agent {max(stamps) - returned:.3f}s")
    return rounds


def trip_rounds(args: argparse.Namespace, fleet: Fleet, address: str) -> list[list[float]]:
    rounds = []
    per_worker = args.agents // args.workers
    total = per_worker * args.workers
    for r in range(args.rounds + 1):
        tripper = (r * 37 + 11) % total  # every worker and replica takes turns
        fleet.send_all(cmd="arm", kind="open")
        fleet.gather({"armed": len(fleet.workers)}, ROUND_DEADLINE)
        fleet.workers[f"w{tripper // per_worker}"].send(cmd="trip", agent=tripper,
                                                        failures=TRIP_THRESHOLD)
        got = fleet.gather({"round": len(fleet.workers), "tripped": 1}, ROUND_DEADLINE)
        crossed = float(got["tripped"][0]["t"])
        stamps = [t for event in got["round"] for t in event["t"]]
        if r:
            rounds.append([(t - crossed) * 1000 for t in stamps])
        _progress(args, f"trip round {r}: last agent {max(stamps) - crossed:.3f}s")
        fleet.send_all(cmd="arm", kind="closed")
        fleet.gather({"armed": len(fleet.workers)}, ROUND_DEADLINE)
        reset_breaker(address, TRIP_KEY)
        fleet.gather({"round": len(fleet.workers)}, ROUND_DEADLINE)
    return rounds


def _progress(args: argparse.Namespace, line: str) -> None:
    if args.verbose:
        print(line, file=sys.stderr)


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"agents": args.agents // args.workers * args.workers,
                              "workers": args.workers, "replicas": args.replicas,
                              "busy_breakers": args.busy, "interval_s": args.interval}
    with Cleanup() as cleanup:
        redis = start_redis(cleanup)
        servers = [ServeProcess(cleanup, store_url=redis.url, name=f"replica{n}")
                   for n in range(args.replicas)]
        apply_spec(servers[0].address, scale_spec(5))
        upstream = HttpUpstream(cleanup)
        rss_idle = [rss_bytes(s.process.pid) for s in servers]
        fleet = Fleet(cleanup, args.workers)
        result["connect_s"] = connect(args, fleet, servers)
        print(f"{result['agents']} agents connected in {result['connect_s']:.1f}s",
              file=sys.stderr)
        rss_connected = [rss_bytes(s.process.pid) for s in servers]
        connected = [s.metric("fusebox_connected_agents") for s in servers]
        result["connected_per_replica"] = connected
        result["rss_idle_mib"] = [r / MiB for r in rss_idle]
        result["rss_connected_mib"] = [r / MiB for r in rss_connected]
        result["bytes_per_agent"] = (sum(rss_connected) - sum(rss_idle)) / max(1, sum(connected))

        fleet.send_all(cmd="traffic", upstream=upstream.address, interval=args.interval)
        time.sleep(min(args.interval, 5.0) + 1.0)  # let the spread-out call loops start
        pids = {f"replica{n}": s.process.pid for n, s in enumerate(servers)}
        redis_process = getattr(redis, "_process", None)  # the fixture keeps its Popen private
        if redis_process is not None:
            pids["redis"] = redis_process.pid
        pids |= {f"worker {name}": w.process.pid for name, w in fleet.workers.items()}
        pids["upstream"] = upstream.process.pid
        window = CpuWindow(pids)
        reports0 = [s.metric("fusebox_reports_ingested_total") for s in servers]
        outcomes0 = [s.metric("fusebox_outcomes_ingested_total") for s in servers]
        window.start()
        time.sleep(args.window)  # the measurement window itself: steady traffic
        cpu = window.stop()
        reports = [s.metric("fusebox_reports_ingested_total") - r
                   for s, r in zip(servers, reports0, strict=True)]
        outcomes = [s.metric("fusebox_outcomes_ingested_total") - o
                    for s, o in zip(servers, outcomes0, strict=True)]
        result["cpu"] = cpu
        result["reports_per_s"] = [r / args.window for r in reports]
        result["outcomes_per_s"] = [o / args.window for o in outcomes]

        result["spec_ms"] = spec_rounds(args, fleet, servers[0].address)
        result["trip_ms"] = trip_rounds(args, fleet, servers[0].address)

        fleet.send_all(cmd="stop_traffic")
        traffic = fleet.gather({"traffic": len(fleet.workers)}, ROUND_DEADLINE)["traffic"]
        result["calls_ok"] = sum(e["ok"] for e in traffic)
        result["calls_other"] = [e["other"] for e in traffic if e["other"]]
        result["rss_end_mib"] = [rss_bytes(s.process.pid) / MiB for s in servers]
        fleet.send_all(cmd="close")
        fleet.gather({"closed": len(fleet.workers)}, 120.0)
    if args.baseline:
        _progress(args, "baseline: raw grpc.aio fan-out, same topology")
        result["baseline"] = grpc_fanout.run(streams=result["agents"], servers=args.replicas,
                                             clients=args.workers, rounds=args.rounds)
    return summarize(result)


def figures(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99),
            "max": max(values), "min": min(values), "mean": statistics.fmean(values)}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    for name in ("spec", "trip"):
        rounds: list[list[float]] = result.pop(f"{name}_ms")
        result[f"{name}_all_agents_ms"] = figures([max(r) for r in rounds])
        result[f"{name}_each_agent_ms"] = figures([v for r in rounds for v in r])
        result[f"{name}_rounds"] = len(rounds)
    result["spec_pass"] = result["spec_all_agents_ms"]["p99"] < SPEC_TARGET_P99_MS
    result["trip_pass"] = result["trip_all_agents_ms"]["p99"] < TRIP_TARGET_P99_MS
    return result


def report(r: dict[str, Any]) -> None:
    print("Fusebox at fleet scale: many agents, replicas on one Redis")
    print(machine_line())
    print(f"setup: {r['agents']} AsyncAgents in {r['workers']} processes, {r['replicas']} "
          f"fusebox serve replicas, 1 redis-server, 1 upstream; each agent calls every "
          f"{r['interval_s']}s, {r['busy_breakers']} busy breakers; connected in "
          f"{r['connect_s']:.1f}s")
    print(f"  agents per replica: {', '.join(f'{c:.0f}' for c in r['connected_per_replica'])}")
    for n, (idle, conn, end) in enumerate(zip(r["rss_idle_mib"], r["rss_connected_mib"],
                                             r["rss_end_mib"], strict=True)):
        print(f"  replica{n}: RSS {idle:.1f} MiB idle -> {conn:.1f} connected -> {end:.1f} end; "
              f"CPU {r['cpu'][f'replica{n}'] * 100:.0f}%; reports {r['reports_per_s'][n]:.0f}/s, "
              f"outcomes {r['outcomes_per_s'][n]:.0f}/s")
    print(f"  server memory per connected agent: {r['bytes_per_agent'] / 1024:.1f} KiB")
    others = ", ".join(f"{k} {v * 100:.0f}%" for k, v in r["cpu"].items()
                       if not k.startswith("replica"))
    print(f"  CPU elsewhere: {others}")
    print(f"  calls: {r['calls_ok']} ok, other outcomes: {r['calls_other'] or 'none'}")
    print(f"{'ms':40} {'p50':>7} {'p99':>7} {'max':>7} {'min':>7}")
    for label, name in (("spec change, all agents (per round)", "spec_all_agents_ms"),
                        ("spec change, each agent", "spec_each_agent_ms"),
                        ("trip, all agents reject (per round)", "trip_all_agents_ms"),
                        ("trip, each agent", "trip_each_agent_ms")):
        f = r[name]
        print(f"  {label:38} {f['p50']:7.1f} {f['p99']:7.1f} {f['max']:7.1f} {f['min']:7.1f}")
    base = r.get("baseline")
    if base is not None:
        f = base["all_streams_ms"]
        print(f"  {'baseline: raw grpc.aio, one msg to all':38} {f['p50']:7.1f} "
              f"{f['p99']:7.1f} {f['max']:7.1f} {f['min']:7.1f}")
        print(f"    (same topology, no Fusebox code, no traffic: the transport's floor here; "
              f"{base['server_cpu_us_per_msg']:.0f} µs CPU per message sent, "
              f"{base['client_cpu_us_per_msg']:.0f} µs per message received)")
    print(f"  {verdict(r['spec_pass'])}  spec change acked by all: p99 "
          f"{r['spec_all_agents_ms']['p99']:.1f} ms, target < {SPEC_TARGET_P99_MS:.0f} ms "
          f"({r['spec_rounds']} rounds)")
    print(f"  {verdict(r['trip_pass'])}  trip propagation to all: p99 "
          f"{r['trip_all_agents_ms']['p99']:.1f} ms, target < {TRIP_TARGET_P99_MS:.0f} ms "
          f"({r['trip_rounds']} rounds)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--busy", type=int, default=10, help="busy traffic breakers")
    parser.add_argument("--interval", type=float, default=2.0,
                        help="seconds between one agent's calls")
    parser.add_argument("--window", type=float, default=20.0, help="CPU window, seconds")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--max-seconds", type=int, default=900, help="hard bound on the run")
    parser.add_argument("--quick", action="store_true",
                        help="100 agents, 2 workers, 5 rounds, 5 s window: a smoke run")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false",
                        help="skip the raw grpc.aio fan-out baseline run at the end")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.agents, args.workers, args.rounds, args.window = 100, 2, 5, 5.0

    with time_bound(args.max_seconds, "--max-seconds"):
        result = run(args)
    report(result)
    dump_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
