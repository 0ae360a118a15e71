"""Fleet budgets (issue 17): retry amplification in a brownout, and rate limit accuracy.

Real processes: ``--callers`` service instances (``AsyncAgent``s, each its own
instance id) spread over ``--workers`` ``tests.e2e.budget_agent`` processes, an
HTTP upstream in this process that counts every request by caller and attempt
(``tests.support.budget_upstream``), and for Fusebox's fleet budgets two
``fusebox serve`` replicas on one redis-server.

**Retry amplification.** The upstream answers 503 to 60% of requests; every
caller makes ``--first-rate`` first attempts per second, retried under
``maxRetries: 3`` (constant, 10 ms). Three flavours side by side, each for
``--seconds``:

* **no budget** (Dapr today): the retry policy alone;
* **per-instance budget** (Linkerd's and Envoy's model): ratio 0.2 and a floor
  of ``minRetriesPerSecond`` *per instance*: the same agents with the same
  spec, statically, no control plane (each instance enforces the whole budget);
* **fleet budget** (Fusebox): the same spec through the control plane: the
  ratio holds per instance, the floor is divided among the fleet by demand.

Reported: upstream requests per first attempt, counted at the upstream over
the whole run. Target: fleet <= 1.25. (Without a budget a call makes
1 + 0.6 + 0.6^2 + 0.6^3 = 2.18 attempts.)

**Rate limit accuracy.** ``--callers`` instances share a ``--limit`` calls/s
limit (reject); half of them want 10 times what the others want,
``--demand-factor`` times the limit in all; once with the default burst (the
limit) and once with a tenth of it. The fleet's admitted calls
per second (each instance's stamps when its attempts start) against the limit
over ``--seconds``; target: within 5% of the limit in every second after the
first. The same instances enforcing the limit alone (per instance, no control
plane) are shown beside it.

    python -m bench.budgets [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc

from bench.cluster_support import (
    Cleanup,
    ServeProcess,
    apply_spec,
    dump_json,
    machine_line,
    start_redis,
    time_bound,
    verdict,
)
from fusebox.v1 import budget_pb2, budget_pb2_grpc
from tests.support.budget_upstream import BudgetUpstream
from tests.support.budgets import BudgetAgents, Fleet, budget_spec

TARGET_AMPLIFICATION = 1.25
TARGET_ACCURACY = 0.05
BROWNOUT = 0.6
MAX_RETRIES = 3
RATIO = 0.2
SKEW = 10.0
#: The whole run, at most (each flavour's agents start, run and stop within it).
RUN_BOUND_SECONDS = 420


def caller_names(prefix: str, callers: int) -> list[str]:
    return [f"{prefix}{k:02d}" for k in range(callers)]


def start_fleet(cleanup: Cleanup, upstream: BudgetUpstream, servers: list[ServeProcess],
                name: str, spec_text: str, instances: list[tuple[str, float]], workers: int, *,
                fleet_wide: bool) -> Fleet:
    """The instances as app ``name``, ready: under the control plane (``fleet_wide``: the
    spec is applied there) or alone on the spec's policies (per instance, no server)."""
    text = spec_text.replace("scopes: [checkout]", f"scopes: [{name}]")
    where: dict[str, Any]
    if fleet_wide:
        apply_spec(servers[0].address, text)
        where = {"server": "ipv4:" + ",".join(server.address for server in servers)}
    else:
        path = cleanup.workdir / f"{name}.yaml"
        path.write_text(text)
        where = {"spec": path}
    groups = [instances[i::workers] for i in range(workers)]
    fleet = Fleet([
        BudgetAgents(cleanup.workdir, f"{name}-{i}", group, upstream=upstream.address,
                     extra=("--app-id", name), **where)
        for i, group in enumerate(groups) if group
    ])
    cleanup.push(fleet.stop)
    fleet.wait_ready(120)
    return fleet


def run_fleet(fleet: Fleet, seconds: float,
              midway: Callable[[], dict[str, Any]] | None = None) -> tuple[float, dict[str, Any]]:
    """Run the fleet for ``seconds``; ``midway()`` is called half-way through (a look at
    the control plane's view). Returns t0 and what ``midway`` returned."""
    t0 = fleet.go(seconds, lead=1.0)
    seen: dict[str, Any] = {}
    if midway is not None:
        time.sleep(max(0.0, t0 + seconds / 2 - time.time()))
        seen = midway()
    fleet.wait_done(seconds + 30)
    fleet.stop()
    return t0, seen


def shares_view(address: str, app_id: str, halves: dict[str, list[str]]) -> dict[str, Any]:
    """The fleet's rate-limit budget as the control plane describes it, by half:
    the mean share (in calls/s) and demand of each half's instances, and what is free."""
    with grpc.insecure_channel(address) as channel:
        listed = budget_pb2_grpc.BudgetServiceStub(channel).ListBudgets(
            budget_pb2.ListBudgetsRequest(namespace="default"), timeout=10).budgets
    chosen = [b for b in listed
              if b.display_name.endswith(f"@{app_id}") and "/rate-limit/" in b.display_name]
    if not chosen:
        return {}
    budget = chosen[0]
    by_id = {i.instance_id: i for i in budget.instances}
    view: dict[str, Any] = {"free_per_second": budget.free * budget.fleet_rate,
                            "fleet_size": budget.fleet_size}
    for half, names in halves.items():
        rows = [by_id[name] for name in names if name in by_id]
        if rows:
            view[f"{half}_share_per_second"] = (
                sum(r.share for r in rows) / len(rows) * budget.fleet_rate)
            view[f"{half}_demand_per_second"] = sum(r.demand_per_second for r in rows) / len(rows)
    return view


def amplification(args: argparse.Namespace, cleanup: Cleanup, upstream: BudgetUpstream,
                  servers: list[ServeProcess]) -> dict[str, Any]:
    retry_only = budget_spec("brownout-none", max_retries=MAX_RETRIES)
    budgeted = budget_spec("brownout-budget", max_retries=MAX_RETRIES, ratio=RATIO,
                           window=args.window, min_retries_per_second=args.floor)
    results: dict[str, Any] = {}
    for flavour, text, fleet_wide in (("no_budget", retry_only, False),
                                      ("per_instance", budgeted, False),
                                      ("fleet", budgeted, True)):
        print(f"brownout: {flavour} ...", file=sys.stderr)
        instances = [(name, args.first_rate) for name in caller_names("b", args.callers)]
        upstream.fail_ratio = BROWNOUT
        fleet = start_fleet(cleanup, upstream, servers, f"brownout-{flavour.replace('_', '-')}",
                            text, instances, args.workers, fleet_wide=fleet_wide)
        t0, _ = run_fleet(fleet, args.seconds)
        upstream.fail_ratio = 0.0
        arrivals = upstream.arrivals(t0, t0 + args.seconds + 5)
        first = sum(1 for a in arrivals if a.attempt == 1)
        retries = len(arrivals) - first
        calls = fleet.total("ok") + fleet.total("failed")
        results[flavour] = {
            "first_attempts": first, "retries": retries, "requests": len(arrivals),
            "requests_per_first_attempt": len(arrivals) / first if first else float("nan"),
            "retries_per_second": retries / args.seconds,
            "retries_skipped": fleet.total("retries_skipped"),
            "calls_succeeded": fleet.total("ok") / calls if calls else float("nan"),
            "errors": fleet.total("errors"),
        }
    return results


def accuracy(args: argparse.Namespace, cleanup: Cleanup, upstream: BudgetUpstream,
             servers: list[ServeProcess]) -> dict[str, Any]:
    names = caller_names("r", args.callers)
    hot, cold = names[: len(names) // 2], names[len(names) // 2:]
    unit = args.demand_factor * args.limit / (SKEW * len(hot) + len(cold))
    instances = [(name, SKEW * unit if name in hot else unit) for name in names]
    low_burst = max(1, args.limit // 10)
    results: dict[str, Any] = {"hot_demand": SKEW * unit, "cold_demand": unit,
                               "low_burst": low_burst}
    upstream.fail_ratio = 0.0
    for flavour, burst, fleet_wide in (("per_instance", None, False), ("fleet", None, True),
                                       ("fleet_low_burst", low_burst, True)):
        print(f"rate limit: {flavour} ...", file=sys.stderr)
        text = budget_spec("accuracy", limit=args.limit, burst=burst)
        fleet = start_fleet(cleanup, upstream, servers, f"limit-{flavour.replace('_', '-')}",
                            text, instances, args.workers, fleet_wide=fleet_wide)
        app_id = f"limit-{flavour.replace('_', '-')}"
        midway = (partial(shares_view, servers[0].address, app_id, {"busy": hot, "idle": cold})
                  if fleet_wide else None)
        _, view = run_fleet(fleet, args.seconds, midway)
        per_second = fleet.per_second("admitted")
        series = [per_second.get(k, 0) for k in range(int(args.seconds))]
        after_first = series[1:]
        deviations = [(v - args.limit) / args.limit for v in after_first]
        results[flavour] = {
            "per_second": series,
            "hot_per_second": list(fleet.per_second("admitted", hot).values()),
            "cold_per_second": list(fleet.per_second("admitted", cold).values()),
            "cold_refused_per_second": list(fleet.per_second("refused", cold).values()),
            "late": fleet.total("late"),
            "control_plane_midway": view,
            "max_deviation": max(deviations, key=abs) if deviations else float("nan"),
            "mean_after_first_second": (sum(after_first) / len(after_first)
                                        if after_first else float("nan")),
            "errors": fleet.total("errors"),
        }
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    with Cleanup() as cleanup, time_bound(RUN_BOUND_SECONDS, "the benchmark's time bound"):
        upstream = BudgetUpstream()
        upstream.__enter__()
        cleanup.push(lambda: upstream.__exit__(None, None, None))
        redis = start_redis(cleanup)
        servers = [ServeProcess(cleanup, store_url=redis.url, name=f"replica{n}")
                   for n in range(args.replicas)]
        brownout = amplification(args, cleanup, upstream, servers) if args.brownout else {}
        rate_limit = accuracy(args, cleanup, upstream, servers) if args.rate_limit else {}
    return {
        "callers": args.callers, "workers": args.workers, "seconds": args.seconds,
        "replicas": args.replicas,
        "first_rate": args.first_rate, "floor": args.floor, "window": args.window,
        "limit": args.limit, "demand_factor": args.demand_factor,
        "brownout": brownout, "rate_limit": rate_limit,
        "pass_amplification": bool(brownout) and (
            brownout["fleet"]["requests_per_first_attempt"] <= TARGET_AMPLIFICATION),
        "pass_accuracy": bool(rate_limit) and (
            abs(rate_limit["fleet"]["max_deviation"]) <= TARGET_ACCURACY),
        "pass_accuracy_low_burst": bool(rate_limit) and (
            abs(rate_limit["fleet_low_burst"]["max_deviation"]) <= TARGET_ACCURACY),
    }


def report(r: dict[str, Any]) -> None:
    print("Fusebox fleet budgets: retry amplification in a brownout, rate limit accuracy")
    print(machine_line())
    print(f"setup: {r['callers']} AsyncAgents in {r['workers']} processes; fleet: "
          f"{r['replicas']} replica(s) + "
          f"redis; {r['seconds']:g} s per run")
    if r["brownout"]:
        report_brownout(r)
    if r["rate_limit"]:
        report_rate_limit(r)


def report_brownout(r: dict[str, Any]) -> None:
    b = r["brownout"]
    print(f"brownout: {BROWNOUT:.0%} of requests answered 503, {r['first_rate']:g} first "
          f"attempts/s per caller, maxRetries {MAX_RETRIES} (10 ms), budget ratio {RATIO:g}, "
          f"minRetriesPerSecond {r['floor']:g}, window {r['window']}")
    columns = (("no_budget", "no budget"), ("per_instance", "per-instance"), ("fleet", "fleet"))
    print(f"{'':40}" + "".join(f"{label:>14}" for _, label in columns))
    rows = (("upstream requests per first attempt", "requests_per_first_attempt", "{:.3f}"),
            ("first attempts", "first_attempts", "{:d}"),
            ("retries reaching the upstream", "retries", "{:d}"),
            ("retries per second", "retries_per_second", "{:.1f}"),
            ("retries skipped (budget spent)", "retries_skipped", "{:d}"),
            ("calls that succeeded", "calls_succeeded", "{:.1%}"))
    for label, name, fmt in rows:
        print(f"  {label:38}" + "".join(f"{fmt.format(b[f][name]):>14}" for f, _ in columns))
    amp = b["fleet"]["requests_per_first_attempt"]
    print(f"  {verdict(r['pass_amplification'])}  fleet budget {amp:.3f} upstream requests per "
          f"first attempt  target <= {TARGET_AMPLIFICATION}; per-instance "
          f"{b['per_instance']['requests_per_first_attempt']:.3f}, no budget "
          f"{b['no_budget']['requests_per_first_attempt']:.3f}")


def report_rate_limit(r: dict[str, Any]) -> None:
    rl = r["rate_limit"]
    print(f"rate limit: {r['limit']} calls/s, {r['callers'] // 2} callers want "
          f"{rl['hot_demand']:.1f}/s and {r['callers'] - r['callers'] // 2} want "
          f"{rl['cold_demand']:.1f}/s ({r['demand_factor']:g} x the limit in all)")
    flavours = (("per_instance", f"per-instance, burst {r['limit']} (the default)"),
                ("fleet", f"fleet, burst {r['limit']} (the default)"),
                ("fleet_low_burst", f"fleet, burst {rl['low_burst']}"))
    for flavour, label in flavours:
        f = rl[flavour]
        print(f"  {label}")
        print(f"    admitted per second:             {' '.join(map(str, f['per_second']))}")
        if flavour != "per_instance":
            print(f"    busy half, admitted per second:  "
                  f"{' '.join(map(str, f['hot_per_second']))}")
            print(f"    idle half, admitted per second:  "
                  f"{' '.join(map(str, f['cold_per_second']))}")
            print(f"    idle half, refused per second:   "
                  f"{' '.join(map(str, f['cold_refused_per_second']))}")
        if view := f["control_plane_midway"]:
            print(f"    half-way, the control plane grants a busy caller "
                  f"{view['busy_share_per_second']:.1f}/s (demand "
                  f"{view['busy_demand_per_second']:.1f}/s), an idle one "
                  f"{view['idle_share_per_second']:.2f}/s (demand "
                  f"{view['idle_demand_per_second']:.2f}/s); free {view['free_per_second']:.1f}/s")
        print(f"    max deviation after the first second {f['max_deviation']:+.1%}, mean "
              f"{f['mean_after_first_second']:.1f}/s; calls a stalled caller never made: "
              f"{f['late']}")
    for flavour, passed in (("fleet", "pass_accuracy"),
                            ("fleet_low_burst", "pass_accuracy_low_burst")):
        f = rl[flavour]
        burst = r["limit"] if flavour == "fleet" else rl["low_burst"]
        print(f"  {verdict(r[passed])}  fleet rate limit (burst {burst}) max deviation "
              f"{f['max_deviation']:+.1%} after the first second  target within "
              f"{TARGET_ACCURACY:.0%} of {r['limit']}/s; per-instance "
              f"{rl['per_instance']['max_deviation']:+.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--replicas", type=int, default=2, help="fusebox serve replicas on redis")
    parser.add_argument("--first-rate", type=float, default=10.0,
                        help="first attempts per second per caller in the brownout")
    parser.add_argument("--floor", type=float, default=10.0, help="minRetriesPerSecond")
    parser.add_argument("--window", default="10s", help="the retry budget's window")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--demand-factor", type=float, default=2.0,
                        help="the fleet's demand over the limit")
    parser.add_argument("--no-brownout", dest="brownout", action="store_false",
                        help="skip the retry amplification runs")
    parser.add_argument("--no-rate-limit", dest="rate_limit", action="store_false",
                        help="skip the rate limit accuracy runs")
    parser.add_argument("--quick", action="store_true", help="10 callers, 4 s runs: a smoke run")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.callers, args.workers, args.seconds, args.limit = 10, 2, 4.0, 100
    result = run(args)
    report(result)
    dump_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
