"""A faster fleet trip (issue 12): failing calls that get through before the agents reject.

Setup (all on 127.0.0.1, all stopped at the end): one redis-server, two
``fusebox serve`` replicas on it, and ``bench._trip_worker`` processes each
holding one agent of app ``checkout``; breaker ``consecutiveFailures >= 5``
(open timeout 60 s) on app ``upstream``. The upstream is a callable in the
agent's process that fails at once (no I/O) and counts the calls reaching it.
Two scenarios, each beside its per-instance reference (the same agents given
the server's resolved policies statically: Dapr's behaviour), in one run:

* **back-to-back loop**: one agent calls the dead upstream ``--loop-calls``
  times in a plain loop, no pause: a sync ``Agent`` and an ``AsyncAgent``,
  connected (``server=``, cluster breakers) and per-instance. Target: a
  connected agent lets exactly the threshold through, as a per-instance one.
* **paced fleet**: 4 sync ``Agent``s in 4 processes, 2 on each replica; the
  fleet's calls are ``--interval`` apart (2 ms), taking turns (agent ``k`` makes
  calls ``k``, ``k + 4``, ... on an absolute schedule), so each agent sees one
  failure in four and its own breaker would open only after 5 of its own
  (20 in all: the per-instance figure). The fleet must open after the 5th
  and reach the other agents before they call again. ``--rounds`` rounds,
  ``ResetBreaker`` between them. Target: every round <= threshold + 3.

    python -m bench.fleet_trip [--rounds 20] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import time
from typing import Any

from bench.cluster_support import (
    Cleanup,
    ServeProcess,
    WorkerProcess,
    apply_spec,
    dump_json,
    machine_line,
    next_shared_event,
    reset_breaker,
    start_redis,
    time_bound,
    upstream_breaker_spec,
    verdict,
)
from fusebox.v1 import policy_pb2

THRESHOLD = 5
PACED_AGENTS = 4
PACED_SLACK = 3  # the target: at most THRESHOLD + PACED_SLACK failing calls per round
SPEC = upstream_breaker_spec("bench-fleet", THRESHOLD, 60_000)
PACED_METHOD = "paced"
PACED_KEY = policy_pb2.BreakerKey(namespace="default", spec="bench-fleet",
                                  kind=policy_pb2.TARGET_KIND_APP, target="upstream",
                                  method=PACED_METHOD)
DEADLINE = 60.0
MAX_SECONDS = 600


def expect(events: queue.Queue[dict[str, Any]], workers: dict[str, WorkerProcess],
           kind: str, count: int = 1) -> list[dict[str, Any]]:
    """The next ``count`` events of ``kind`` (one per worker asked)."""
    found: list[dict[str, Any]] = []
    end = time.monotonic() + DEADLINE
    while len(found) < count:
        event = next_shared_event(events, workers, end)
        if event["event"] == kind:
            found.append(event)
    return found


def back_to_back(args: argparse.Namespace, servers: list[ServeProcess],
                 workers: dict[str, WorkerProcess],
                 events: queue.Queue[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    worker = workers["w0"]
    results: dict[str, dict[str, Any]] = {}
    for n, (api, mode) in enumerate([("sync", "cluster"), ("async", "cluster"),
                                     ("sync", "local"), ("async", "local")]):
        print(f"back-to-back loop: {api} agent, {mode} ...", file=sys.stderr)
        worker.send(cmd="loop", api=api, mode=mode, server=servers[n % 2].address,
                    method=f"loop-{n}", calls=args.loop_calls, instance=f"loop-{n}")
        results[f"{api}/{mode}"] = expect(events, workers, "loop")[0]
    return results


def paced_round(args: argparse.Namespace, workers: list[WorkerProcess],
                all_workers: dict[str, WorkerProcess],
                events: queue.Queue[dict[str, Any]]) -> dict[str, Any]:
    t0 = time.time() + 0.3  # every worker has the command well before the first slot
    for k, worker in enumerate(workers):
        worker.send(cmd="paced", t0=t0, slot=k, every=len(workers), interval=args.interval,
                    calls=args.paced_calls)
    calls = sorted((int(n), float(t), result, int(e["worker"][1:]))
                   for e in expect(events, all_workers, "paced", len(workers))
                   for n, t, result in e["calls"])
    failed = [c for c in calls if c[2] == "failed"]
    first_rejected: dict[int, float] = {}
    for _, t, result, agent in calls:
        if result == "rejected":
            first_rejected.setdefault(agent, t)
    crossing = failed[THRESHOLD - 1][1] if len(failed) >= THRESHOLD else None
    return {
        "failed": len(failed),
        "every_agent_rejecting": len(first_rejected) == len(workers),
        # Each agent calls once per (agents x interval): an upper bound of its own delay.
        "crossing_to_last_first_rejection_ms": (
            (max(first_rejected.values()) - crossing) * 1000
            if crossing is not None and len(first_rejected) == len(workers) else None),
        "late_ms_max": max((t - (t0 + n * args.interval)) * 1000 for n, t, _, _ in calls),
        "failed_slots": [n for n, _, _, _ in failed],
    }


def paced(args: argparse.Namespace, mode: str, servers: list[ServeProcess],
          workers: dict[str, WorkerProcess],
          events: queue.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    fleet = [workers[f"w{k}"] for k in range(PACED_AGENTS)]
    for k, worker in enumerate(fleet):
        worker.send(cmd="start", mode=mode, server=servers[k % 2].address,
                    method=PACED_METHOD, instance=f"paced-{mode}-{k}")
    expect(events, workers, "ready", len(fleet))
    time.sleep(0.5)  # the flushers announce the new breaker's interest (within 80 ms)
    rounds: list[dict[str, Any]] = []
    count = args.rounds if mode == "cluster" else 1  # per instance: 60 s open, one round
    for r in range(count):
        print(f"paced fleet, {mode}: round {r + 1}/{count}", file=sys.stderr)
        rounds.append(paced_round(args, fleet, workers, events))
        if mode == "cluster":
            reset_breaker(servers[0].address, PACED_KEY)
            for worker in fleet:
                worker.send(cmd="wait_closed")
            expect(events, workers, "closed_state", len(fleet))
    for worker in fleet:
        worker.send(cmd="close")
    expect(events, workers, "closed", len(fleet))
    return rounds


def run(args: argparse.Namespace) -> dict[str, Any]:
    with Cleanup() as cleanup, time_bound(MAX_SECONDS, "fleet_trip's time limit"):
        redis = start_redis(cleanup)
        servers = [ServeProcess(cleanup, store_url=redis.url, name=f"replica{n}")
                   for n in range(2)]
        apply_spec(servers[0].address, SPEC)
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        workers = {f"w{n}": WorkerProcess(cleanup, f"w{n}", events=events,
                                          module="bench._trip_worker")
                   for n in range(PACED_AGENTS)}
        loop = back_to_back(args, servers, workers, events)
        cluster = paced(args, "cluster", servers, workers, events)
        local = paced(args, "local", servers, workers, events)
    cluster_failed = [r["failed"] for r in cluster]
    bound = THRESHOLD + PACED_SLACK
    return {
        "threshold": THRESHOLD, "loop_calls": args.loop_calls, "interval_s": args.interval,
        "paced_agents": PACED_AGENTS, "paced_calls": args.paced_calls, "loop": loop,
        "paced_cluster": cluster, "paced_local": local, "paced_target_at_most": bound,
        "pass_loop_sync": loop["sync/cluster"]["reached"] == THRESHOLD,
        "pass_loop_async": loop["async/cluster"]["reached"] == THRESHOLD,
        "pass_paced": max(cluster_failed) <= bound
                      and all(r["every_agent_rejecting"] for r in cluster),
    }


def report(r: dict[str, Any]) -> None:
    threshold = r["threshold"]
    print("Fusebox fleet trip: failing calls that reach a dead upstream before the agents reject")
    print(machine_line())
    print(f"setup: 1 redis-server, 2 fusebox serve replicas; breaker consecutiveFailures >= "
          f"{threshold}, open timeout 60 s; the upstream is a callable failing at once")
    loop = r["loop"]
    print(f"back-to-back loop ({r['loop_calls']:,} calls, no pause)"
          f"{'fusebox':>22} {'per-instance':>13}")
    for api, label in (("sync", "sync Agent"), ("async", "AsyncAgent")):
        print(f"  {label + ': calls reaching the upstream':50} "
              f"{loop[api + '/cluster']['reached']:>10} {loop[api + '/local']['reached']:>13}")
    cluster, local = r["paced_cluster"], r["paced_local"]
    failed = [x["failed"] for x in cluster]
    spans = [x["crossing_to_last_first_rejection_ms"] for x in cluster
             if x["crossing_to_last_first_rejection_ms"] is not None]
    print(f"paced fleet: {r['paced_agents']} sync Agents in {r['paced_agents']} processes, "
          f"2 per replica; the fleet's calls {r['interval_s'] * 1000:g} ms apart, taking turns; "
          f"{len(cluster)} rounds")
    print(f"  {'failing calls reaching the upstream, per round':50} "
          f"{'fusebox':>10} {'per-instance':>13}")
    print(f"  {'  median':50} {statistics.median(failed):>10g} {local[0]['failed']:>13}")
    print(f"  {'  max':50} {max(failed):>10} {max(x['failed'] for x in local):>13}")
    print(f"  fusebox rounds: {' '.join(str(f) for f in failed)}")
    if spans:
        print(f"  crossing failure -> last agent's first rejected call: median "
              f"{statistics.median(spans):.1f} ms, max {max(spans):.1f} ms (each agent calls "
              f"every {r['paced_agents'] * r['interval_s'] * 1000:g} ms: an upper bound)")
    late = max(x["late_ms_max"] for x in cluster + local)
    print(f"  schedule: the latest call started {late:.2f} ms after its slot")
    print(f"  {verdict(r['pass_loop_sync'])}  back-to-back, sync Agent connected: "
          f"{loop['sync/cluster']['reached']} calls reached the upstream  target = "
          f"{threshold} (per-instance {loop['sync/local']['reached']})")
    print(f"  {verdict(r['pass_loop_async'])}  back-to-back, AsyncAgent connected: "
          f"{loop['async/cluster']['reached']} calls reached the upstream  target = "
          f"{threshold} (per-instance {loop['async/local']['reached']})")
    print(f"  {verdict(r['pass_paced'])}  paced fleet: at most {max(failed)} failing calls in "
          f"a round  target <= {threshold} + 3 = {r['paced_target_at_most']} in every round "
          f"(per-instance {local[0]['failed']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="paced fleet rounds")
    parser.add_argument("--interval", type=float, default=0.002,
                        help="seconds between two calls of the paced fleet")
    parser.add_argument("--paced-calls", type=int, default=100,
                        help="calls of the paced fleet per round")
    parser.add_argument("--loop-calls", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="3 paced rounds: a smoke run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = 3
    result = run(args)
    report(result)
    dump_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
