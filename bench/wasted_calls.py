"""Wasted calls: failing calls a dead upstream absorbs before every caller stops.

The same 50 callers (``AsyncAgent``s spread over ``--workers`` processes, each
calling the upstream once per ``--interval`` with a new HTTP connection, on an
absolute schedule with the callers' phases evenly spread: 1,000 calls/s in all,
one every millisecond) run twice in one run, with the same policy
(``consecutiveFailures >= 5``, ``maxRequests: 1``, ``timeout: --open-timeout``):

* **fusebox**: cluster-wide breakers, agents linked to two ``fusebox serve``
  replicas on one redis-server (agent *i* on replica *i mod 2*);
* **per-instance**: the same agents given the same resolved policies
  statically (``AsyncAgent(policies=...)``, no server), i.e. one breaker per
  caller, as Dapr sidecars, failsafe-go or pybreaker in memory.

The upstream (an HTTP server on 127.0.0.1 in this process, counting every
request it receives) answers 200 for a warm-up, then 500 to everything. Counted
at the upstream, with ``first_open`` the first caller's open stamp and ``T`` the
open timeout:

* **wasted** = failing requests from the switch to 500 until ``first_open + 0.9 T``
  (every caller had stopped well before: calls still in flight when a caller
  adopted open are included);
* **probes** = requests in ``[first_open + 0.9 T, first_open + 1.9 T)``: the first
  half-open window (fusebox: one cluster half-open, ``maxRequests`` leases;
  per-instance: each caller's own half-open, one probe each).

Targets: fusebox wasted <= 10 with the default 50 callers at 1,000 calls/s in
all (issue 12, "A faster fleet trip"), against 5 x 50 = 250 per instance; and
the earlier bound, 5 + calls in flight (issue 4: each caller has at most one
call in flight, so at most 5 + 50). The report also splits fusebox's wasted
calls at the moment Redis tripped (calls that arrived before it vs. during
propagation).

    python -m bench.wasted_calls [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import sys
import threading
import time
from typing import Any

from bench.cluster_support import (
    Cleanup,
    ServeProcess,
    WorkerProcess,
    apply_spec,
    dump_json,
    get_breaker,
    machine_line,
    next_shared_event,
    start_redis,
    upstream_breaker_spec,
    verdict,
)
from fusebox.v1 import breaker_pb2, policy_pb2

THRESHOLD = 5
TARGET_WASTED = 10  # issue 12, for the default fleet: 50 callers, 1,000 calls/s in all
KEY = policy_pb2.BreakerKey(namespace="default", spec="bench-wasted",
                            kind=policy_pb2.TARGET_KIND_APP, target="upstream", method="work")
READY_DEADLINE = 120.0


def spec(open_timeout: float) -> str:
    return upstream_breaker_spec("bench-wasted", THRESHOLD, int(open_timeout * 1000))


class CountingUpstream:
    """HTTP/1.0 on 127.0.0.1: 200 or 500, then close; every request stamped on arrival."""

    def __init__(self) -> None:
        self.failing = False
        self.hits: list[tuple[float, bool]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            failing = self.failing
            self.hits.append((time.time(), failing))
            status = b"500 Internal Server Error" if failing else b"200 OK"
            writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def start(self) -> None:
        self._thread.start()

        async def serve() -> int:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
            return int(self._server.sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)

    def count(self, start: float, end: float, failing: bool | None = None) -> int:
        return sum(1 for t, f in list(self.hits)
                   if start <= t < end and (failing is None or f == failing))

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def run_mode(mode: str, args: argparse.Namespace, upstream: CountingUpstream,
             workers: dict[str, WorkerProcess], events: queue.Queue[dict[str, Any]],
             servers: list[ServeProcess]) -> dict[str, Any]:
    per_worker = args.callers // len(workers)
    for n, worker in enumerate(workers.values()):
        worker.send(cmd="start", agents=per_worker, first=n * per_worker,
                    servers=[s.address for s in servers], app_id="checkout",
                    target="upstream", method="work", mode=mode)
    end = time.monotonic() + READY_DEADLINE
    ready = 0
    while ready < len(workers):
        ready += next_shared_event(events, workers, end)["event"] == "ready"
    upstream.failing = False
    t0 = time.time() + 0.1  # every worker has the command before the first slot
    for worker in workers.values():
        worker.send(cmd="call_loop", upstream=f"127.0.0.1:{upstream.port}",
                    interval=args.interval, t0=t0, callers=args.callers)
    time.sleep(args.warmup)  # healthy traffic: every breaker exists and is subscribed
    switched = time.time()
    upstream.failing = True
    opened: dict[int, float] = {}
    end = time.monotonic() + 30
    while len(opened) < args.callers:
        event = next_shared_event(events, workers, end)
        if event["event"] == "state" and event["to"] == "open":
            opened.setdefault(int(event["agent"]), float(event["t"]))
    first_open, all_open = min(opened.values()), max(opened.values())
    T = args.open_timeout
    window_end = first_open + 1.9 * T
    time.sleep(max(0.0, window_end - time.time()) + 0.05)
    for worker in workers.values():
        worker.send(cmd="stop_calls")
    calls: dict[str, dict[str, int]] = {}
    end = time.monotonic() + 30
    while len(calls) < args.callers:
        event = next_shared_event(events, workers, end)
        if event["event"] == "calls":
            calls.update(event["per_agent"])
    for worker in workers.values():
        worker.send(cmd="close")
    closed = 0
    end = time.monotonic() + 60
    while closed < len(workers):
        closed += next_shared_event(events, workers, end)["event"] == "closed"

    result: dict[str, Any] = {
        "mode": mode,
        "wasted": upstream.count(switched, first_open + 0.9 * T, failing=True),
        "probes_first_half_open": upstream.count(first_open + 0.9 * T, window_end),
        "stop_spread_ms": (all_open - first_open) * 1000,
        "all_stopped_after_ms": (all_open - switched) * 1000,
        "rejected_locally": sum(c.get("open", 0) for c in calls.values()),
        "calls_failed_seen_by_callers": sum(c.get("fail", 0) for c in calls.values()),
    }
    if mode == "cluster":
        breaker = get_breaker(servers[0].address, KEY)
        trips = [t.time.ToNanoseconds() / 1e9 for t in breaker.recent_transitions
                 if t.to_state == breaker_pb2.BREAKER_STATE_OPEN
                 and t.cause == breaker_pb2.TRANSITION_CAUSE_TRIP
                 and t.time.ToNanoseconds() / 1e9 >= switched]
        if trips:
            tripped = min(trips)
            result["wasted_before_redis_trip"] = upstream.count(switched, tripped, failing=True)
            result["wasted_during_propagation"] = result["wasted"] - result[
                "wasted_before_redis_trip"]
            result["trip_to_all_stopped_ms"] = (all_open - tripped) * 1000
    return result


def run(args: argparse.Namespace) -> dict[str, Any]:
    with Cleanup() as cleanup:
        upstream = CountingUpstream()
        upstream.start()
        cleanup.push(upstream.stop)
        redis = start_redis(cleanup)
        servers = [ServeProcess(cleanup, store_url=redis.url, name=f"replica{n}")
                   for n in range(2)]
        apply_spec(servers[0].address, spec(args.open_timeout))
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        workers = {f"w{n}": WorkerProcess(cleanup, f"w{n}", events=events)
                   for n in range(args.workers)}
        results = {}
        for mode in ("cluster", "local"):
            print(f"running {mode} mode ...", file=sys.stderr)
            results[mode] = run_mode(mode, args, upstream, workers, events, servers)
    bound = THRESHOLD + args.callers
    return {"callers": args.callers, "workers": args.workers, "interval_s": args.interval,
            "open_timeout_s": args.open_timeout, "threshold": THRESHOLD,
            "fusebox": results["cluster"], "per_instance": results["local"],
            "target_wasted_at_most": TARGET_WASTED,
            "pass_wasted": results["cluster"]["wasted"] <= TARGET_WASTED,
            "in_flight_bound": bound,
            "pass_in_flight_bound": results["cluster"]["wasted"] <= bound,
            "pass_probes": results["cluster"]["probes_first_half_open"] <= 1}


def report(r: dict[str, Any]) -> None:
    f, p = r["fusebox"], r["per_instance"]
    print("Fusebox wasted calls: a dead upstream behind "
          f"{r['callers']} callers, consecutiveFailures >= {r['threshold']}, maxRequests 1")
    print(machine_line())
    print(f"setup: {r['callers']} AsyncAgents in {r['workers']} processes, one call each per "
          f"{r['interval_s'] * 1000:.0f} ms; fusebox: 2 replicas + redis; open timeout "
          f"{r['open_timeout_s']:.1f} s")
    print(f"{'':44} {'fusebox':>10} {'per-instance':>13}")
    rows = (("failing calls reaching the upstream", "wasted", "{:d}"),
            ("probes in the first half-open window", "probes_first_half_open", "{:d}"),
            ("switch to 500 -> every caller stopped, ms", "all_stopped_after_ms", "{:.0f}"),
            ("first -> last caller stopped, ms", "stop_spread_ms", "{:.0f}"),
            ("calls rejected locally (fail fast)", "rejected_locally", "{:d}"))
    for label, name, fmt in rows:
        print(f"  {label:42} {fmt.format(f[name]):>10} {fmt.format(p[name]):>13}")
    if "wasted_before_redis_trip" in f:
        print(f"  fusebox: {f['wasted_before_redis_trip']} failing calls arrived before Redis "
              f"tripped, {f['wasted_during_propagation']} while the trip propagated "
              f"({f['trip_to_all_stopped_ms']:.0f} ms to the last caller)")
    rate = r["callers"] / r["interval_s"]
    print(f"  {verdict(r['pass_wasted'])}  fusebox wasted {f['wasted']}  target <= "
          f"{r['target_wasted_at_most']} ({r['callers']} callers, {rate:,.0f} calls/s in all); "
          f"per-instance {p['wasted']} (expected {r['threshold'] * r['callers']})")
    print(f"  {verdict(r['pass_in_flight_bound'])}  fusebox wasted {f['wasted']}  target <= "
          f"{r['threshold']} + in-flight (<= 1 per caller) = {r['in_flight_bound']}")
    print(f"  {verdict(r['pass_probes'])}  fusebox probes {f['probes_first_half_open']}  "
          f"target <= maxRequests = 1; per-instance {p['probes_first_half_open']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.05,
                        help="seconds between two calls of one caller")
    parser.add_argument("--open-timeout", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true",
                        help="10 callers, 1 s open timeout: a smoke run")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    if args.quick:
        args.callers, args.open_timeout, args.warmup = 10, 1.0, 0.5
    if args.callers % args.workers:
        parser.error("--callers must be a multiple of --workers")
    result = run(args)
    report(result)
    dump_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
