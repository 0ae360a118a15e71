"""Shared state: the per-call cost of a fleet-wide breaker, Fusebox vs pybreaker's Redis storage.

    python -m bench.shared_state            # human-readable report (also: make bench-shared)
    python -m bench.shared_state --json     # the same figures as JSON on stdout
    python -m bench.shared_state --quick    # a smoke run; figures not meaningful

Setup, all on 127.0.0.1 and all stopped at the end (``bench.cluster_support``):
one private ``redis-server`` on a free port, one ``fusebox serve --store
redis://127.0.0.1:PORT/0`` on it, and the spec of ``bench.link_traffic``
applied (Dapr's ``simpleCB``, ``consecutiveFailures >= 5``, on
``order-processor:orders``).

Timed side by side in one run, success path (``fn`` returns an int),
interleaved repeats (``bench.timing``):

1. a bare call ``fn()``;
2. ``pybreaker.CircuitBreaker(fail_max=5)`` in memory;
3. ``pybreaker.CircuitBreaker(fail_max=5, state_storage=CircuitRedisStorage(...))``
   on that same redis-server: pybreaker's shared state, the Python peer of a
   fleet-wide breaker (``CircuitRedisStorage(state, redis_client, namespace=)``
   in pybreaker 1.x; the client must return bytes, as it decodes the state).
   A successful call reads the state (``GET``) and resets the failure counter
   (``SET``): two round trips per call;
4. the Fusebox sync ``Agent`` linked to the control plane, cluster mode,
   calling through ``fb.app(...).call(fn)``;
5. the same agent without a server (per-instance, the policies the server
   resolved for 4), for reference.

Before timing, each shared-state contender is proven to share state.
pybreaker: a second breaker on another connection sees the state a first one
tripped (in a namespace of its own). Fusebox: the agent's policies come from
the server, its outcome reports reach the Redis store (``GetBreaker``
counts), a ``FORCE_OPEN`` override set on the server makes it reject calls
locally, and ``ResetBreaker`` closes it again. After timing: the breakers are
still closed, no call failed, and the server counted the timed calls.

Redis commands per call: ``INFO commandstats`` before and after a separate
batch of calls of each shared-state contender (plus a settling pause, so what
the agent's background reports cause is counted), less a baseline: the same
window with bare calls instead, which counts the control plane's own
background (deadline sweeps, a few hundred commands per second, in bursts).

Target (printed PASS/FAIL, best ns/call of each): the cluster agent is at
least 100x cheaper per call than pybreaker with ``CircuitRedisStorage``. The
exit status is 0 unless ``--strict`` and the target failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections import Counter
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import grpc
import pybreaker
import redis

from bench.agent_overhead import QUICK, machine
from bench.cluster_support import (
    Cleanup,
    ServeProcess,
    apply_spec,
    get_breaker,
    reset_breaker,
    start_redis,
    time_bound,
)
from bench.hot_path import (
    APP_ID,
    BREAKER_APP,
    BREAKER_METHOD,
    Comparison,
    compare,
    work,
)
from bench.link_traffic import (
    SETTLE_SECONDS,
    SPEC_YAML,
    WARMUP_CALLS,
    _has_server_policies,
    _wait_until,
)
from bench.timing import Budget, Measurement, Variant, measure, sync_loop
from fusebox.agent import Agent, BreakerOpenError, BreakerState, Target
from fusebox.agent.events import TargetStats
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, policy_pb2
from tests.support.redis_server import RedisServer

TIMES_CHEAPER = 100.0  # target: agent (cluster) <= 1/100 of pybreaker + CircuitRedisStorage
FAIL_MAX = 5
PYBREAKER_NAMESPACE = "bench-shared"  # pybreaker's keys: bench-shared:pybreaker:state, ...
# The breaker the spec gives checkout -> order-processor:orders, as the server names it.
KEY = policy_pb2.BreakerKey(namespace="default", spec="bench", kind=policy_pb2.TARGET_KIND_APP,
                            target=BREAKER_APP, method=BREAKER_METHOD)
# Calls per Redis command-count batch (shared-state contenders only), full and --quick.
COUNT_CALLS = {"pybreaker_redis": 5_000, "agent_cluster": 1_000_000}
QUICK_COUNT_CALLS = {"pybreaker_redis": 200, "agent_cluster": 20_000}
# The server's counters of outcomes received in reports, and dropped as stale.
OUTCOME_METRICS = ("fusebox_outcomes_ingested_total", "fusebox_outcomes_stale_total")
COUNTED_DEADLINE = 5.0  # seconds for the store to count every timed call of the agent
MAX_SECONDS = 120  # hard bound of a run: setup, timing, counts, cleanup


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- Redis command counts ----------------------------------------------------------------


def command_counts(server: RedisServer) -> Counter[str]:
    """Calls per command since redis-server started (``INFO commandstats``), INFO excluded."""
    counts: Counter[str] = Counter()
    for line in server.command("INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_"):
            name, _, fields = line[len("cmdstat_"):].partition(":")
            counts[name] = int(fields.split(",", 1)[0].split("=", 1)[1])
    counts.pop("info", None)  # our own INFO calls
    return counts


@dataclass(frozen=True, slots=True)
class CommandCount:
    """Redis commands seen while ``calls`` calls ran (``call_seconds``) and settled."""

    calls: int
    call_seconds: float
    seconds: float  # the whole counting window: the calls and the settling pause
    commands: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.commands.values())

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "call_seconds": round(self.call_seconds, 3),
                "seconds": round(self.seconds, 3), "commands": self.total,
                "by_command": dict(self.commands.most_common())}


def count_commands(server: RedisServer, loop: Any, calls: int) -> CommandCount:
    before = command_counts(server)
    started = time.perf_counter()
    loop(calls)
    call_seconds = time.perf_counter() - started
    time.sleep(SETTLE_SECONDS)  # what the calls cause in the background is counted too
    seconds = time.perf_counter() - started
    delta = command_counts(server)
    delta.subtract(before)
    return CommandCount(calls, call_seconds, seconds, +delta)


@dataclass(frozen=True, slots=True)
class CommandBatch:
    """One contender's batch, and its baseline: the same window with bare calls instead.

    The control plane sends Redis commands of its own all the time (deadline
    sweeps, a few hundred per second); the baseline counts them over a window
    as long as the batch's, with the benchmark's thread as busy, so that the
    difference is what the contender's calls caused.
    """

    name: str
    label: str
    batch: CommandCount
    baseline: CommandCount

    def net(self) -> Counter[str]:
        """Per command: the batch's count less the baseline's, scaled to the batch's window."""
        scale = self.batch.seconds / self.baseline.seconds
        names = set(self.batch.commands) | set(self.baseline.commands)
        return Counter({k: self.batch.commands[k] - self.baseline.commands[k] * scale
                        for k in names})

    @property
    def net_per_call(self) -> float:
        return sum(self.net().values()) / self.batch.calls

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "batch": self.batch.as_dict(),
                "baseline": self.baseline.as_dict(),
                "raw_per_call": round(self.batch.total / self.batch.calls, 6),
                "net_per_call": round(self.net_per_call, 6),
                "net_by_command": {k: round(v, 1) for k, v in self.net().most_common()}}


def count_batch(server: RedisServer, variant: Variant, calls: int, bare: Variant,
                bare_ns: float) -> CommandBatch:
    batch = count_commands(server, variant.loop, calls)
    baseline = count_commands(server, bare.loop, max(1, int(batch.call_seconds / bare_ns * 1e9)))
    return CommandBatch(variant.name, variant.label, batch, baseline)


# -- proofs that the shared state is shared ------------------------------------------------


def redis_breaker(client: redis.Redis, namespace: str) -> pybreaker.CircuitBreaker:
    """pybreaker with its Redis storage (the client must return bytes: it decodes the state)."""
    storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, client, namespace=namespace)
    return pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=30, state_storage=storage)


def check_pybreaker_shares_state(port: int) -> None:
    """Two breakers on two connections, one namespace: one trips, the other sees it open."""

    def failing() -> None:
        raise RuntimeError("probe")

    namespace = f"{PYBREAKER_NAMESPACE}-check"
    with redis.Redis(host="127.0.0.1", port=port) as one, \
            redis.Redis(host="127.0.0.1", port=port) as other:
        tripping, watching = redis_breaker(one, namespace), redis_breaker(other, namespace)
        for _ in range(FAIL_MAX):
            # The call reaching fail_max raises CircuitBreakerError instead of RuntimeError.
            with contextlib.suppress(RuntimeError, pybreaker.CircuitBreakerError):
                tripping.call(failing)
        if watching.current_state != pybreaker.STATE_OPEN:
            raise RuntimeError("benchmark invalid: pybreaker's CircuitRedisStorage did not "
                               f"share the open state (other breaker: {watching.current_state})")


def set_override(address: str, override: int, reason: str) -> None:
    with grpc.insecure_channel(address) as channel:
        breaker_pb2_grpc.BreakerServiceStub(channel).SetOverride(
            breaker_pb2.SetOverrideRequest(key=KEY, override=override, reason=reason), timeout=10
        )


def server_successes(address: str) -> int:
    """``total_successes`` of the breaker in the Redis store (0 while it does not exist)."""
    try:
        return int(get_breaker(address, KEY).counts.total_successes)
    except grpc.RpcError:
        return 0


def _ms_until(started: float, condition: Any, what: str) -> float:
    """Milliseconds from ``started`` (``time.perf_counter()``) until ``condition`` holds."""
    _wait_until(condition, what)
    return (time.perf_counter() - started) * 1000


def prove_cluster_link(fb: Agent, target: Target, address: str) -> dict[str, Any]:
    """The agent follows the cluster: policies, reports, pushed state. Raises otherwise.

    Times run from the start of the gRPC call to the server (or from the end of
    the warm-up calls for the first report).
    """
    _wait_until(lambda: _has_server_policies(fb), "the agent received no policies")
    loop = sync_loop("target.call(fn)", {"target": target, "fn": work})
    loop(WARMUP_CALLS)  # plan resolved, breaker created, outcomes reported

    def state() -> BreakerState | None:
        return fb.breaker_states().get(target.name)

    if fb.breaker(target.name) is None or state() is not BreakerState.CLOSED:
        raise RuntimeError(f"benchmark invalid: the agent's breaker {target.name!r} is "
                           f"{state()}; expected closed after {WARMUP_CALLS} successful calls")
    reported_ms = _ms_until(time.perf_counter(), lambda: server_successes(address) > 0,
                            "no outcome report of the agent reached the Redis store")
    started = time.perf_counter()
    set_override(address, breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN, "bench: does the agent follow")
    open_ms = _ms_until(started, lambda: state() is BreakerState.OPEN,
                        "the agent did not adopt FORCE_OPEN from the server")
    try:
        target.call(work)
    except BreakerOpenError:
        pass
    else:
        raise RuntimeError("benchmark invalid: the agent admitted a call under FORCE_OPEN")
    started = time.perf_counter()
    reset_breaker(address, KEY)  # closed, zeroed counts, override cleared
    closed_ms = _ms_until(started, lambda: state() is BreakerState.CLOSED,
                          "the agent did not adopt the reset from the server")
    return {"policies_from_server": True, "report_reached_store_ms": round(reported_ms, 1),
            "force_open_adopted_ms": round(open_ms, 1), "reset_adopted_ms": round(closed_ms, 1)}


def check_after(fb: Agent, local: Agent, target: Target, stats_before: TargetStats,
                pb_redis: pybreaker.CircuitBreaker, address: str) -> dict[str, Any]:
    """Still closed, no failure, and the timed calls were counted by the server."""
    # stats_before holds the call rejected under FORCE_OPEN (counted as a failure).
    for agent, failures_before in ((fb, stats_before.failures), (local, 0)):
        state = agent.breaker_states().get(target.name)
        counters = agent.stats().get(target.name)
        if state is not BreakerState.CLOSED or counters is None or (
            counters.failures != failures_before
        ):
            raise RuntimeError(f"benchmark invalid: breaker {state}, counters {counters}; "
                               "expected a closed breaker and successful calls only")
    if pb_redis.current_state != pybreaker.STATE_CLOSED:
        raise RuntimeError(f"benchmark invalid: pybreaker (Redis) is {pb_redis.current_state}")
    calls = fb.stats()[target.name].successes - stats_before.successes
    deadline = time.monotonic() + COUNTED_DEADLINE  # the last flushes and apply ticks
    while (counted := server_successes(address)) < calls and time.monotonic() < deadline:
        time.sleep(0.05)
    if calls <= 0 or counted <= 0:
        raise RuntimeError(f"benchmark invalid: {calls} timed calls, {counted} counted by the "
                           "server; the agent's reports did not reach the Redis store")
    return {"agent_calls_during_timing": calls, "server_counted_successes": counted}


# -- the run -----------------------------------------------------------------------------


def run(budget: Budget, quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {"machine": machine()}
    report["machine"]["packages"]["redis"] = metadata.version("redis")
    with Cleanup() as cleanup, time_bound(MAX_SECONDS, "the benchmark's time bound"):
        progress("starting redis-server and fusebox serve --store redis://... ...")
        server = start_redis(cleanup)
        report["machine"]["packages"]["redis-server"] = next(
            line.split(":", 1)[1] for line in server.command("INFO", "server").splitlines()
            if line.startswith("redis_version:"))
        serve = ServeProcess(cleanup, store_url=server.url, name="serve")
        apply_spec(serve.address, SPEC_YAML)

        check_pybreaker_shares_state(server.port)
        client = redis.Redis(host="127.0.0.1", port=server.port)
        cleanup.push(client.close)
        pb_redis = redis_breaker(client, PYBREAKER_NAMESPACE)

        progress("connecting the agent, proving it follows the cluster ...")
        # A policy cache of its own, new: the policies it gets can only come from this server
        # (the default path may hold policies cached from another control plane).
        fb = Agent(app_id=APP_ID, server=serve.address, instance_id="bench-shared",
                   cache_path=cleanup.workdir / "agent-cache.pb")
        cleanup.push(fb.close)
        fb.start()
        target = fb.app(BREAKER_APP, method=BREAKER_METHOD)
        link = prove_cluster_link(fb, target, serve.address)
        local = Agent(app_id=APP_ID, policies=fb.policies)  # the same policies, no server
        cleanup.push(local.close)
        local_target = local.app(BREAKER_APP, method=BREAKER_METHOD)
        stats_before = fb.stats()[target.name]
        ingested_before = {m: serve.metric(m) for m in OUTCOME_METRICS}

        progress("timing ...")
        namespace: dict[str, Any] = {
            "fn": work, "cb": pybreaker.CircuitBreaker(fail_max=FAIL_MAX, reset_timeout=30),
            "rcb": pb_redis, "target": target, "local_target": local_target,
        }
        variants = [
            Variant("bare", "bare call: fn()", sync_loop("fn()", namespace)),
            Variant("pybreaker_memory", "pybreaker in memory: cb.call(fn)",
                    sync_loop("cb.call(fn)", namespace)),
            Variant("pybreaker_redis", "pybreaker CircuitRedisStorage: cb.call(fn)",
                    sync_loop("rcb.call(fn)", namespace)),
            Variant("agent_cluster", "fusebox Agent, cluster (redis): .call(fn)",
                    sync_loop("target.call(fn)", namespace)),
            Variant("agent_local", "fusebox Agent, per-instance: .call(fn)",
                    sync_loop("local_target.call(fn)", namespace)),
        ]
        results = measure(variants, budget)
        after = check_after(fb, local, target, stats_before, pb_redis, serve.address)
        after.update({m.removeprefix("fusebox_").removesuffix("_total") + "_during_timing":
                      int(serve.metric(m) - ingested_before[m]) for m in OUTCOME_METRICS})

        progress("counting Redis commands ...")
        counts_per = QUICK_COUNT_CALLS if quick else COUNT_CALLS
        by_name = {v.name: v for v in variants}
        bare_ns = results[0].best_ns
        counts = [count_batch(server, by_name[name], counts_per[name], by_name["bare"], bare_ns)
                  for name in ("pybreaker_redis", "agent_cluster")]
    target_cmp = compare(results, "fusebox cluster agent vs pybreaker CircuitRedisStorage",
                         "agent_cluster", "pybreaker_redis", 1 / TIMES_CHEAPER, inclusive=True)
    report.update({
        "budget": {"target_seconds_per_repeat": budget.target_seconds,
                   "repeats": budget.repeats, "max_loops": budget.max_loops, "quick": quick},
        "redis_url": server.url,
        "link": {**link, **after},
        "measurements": results,
        "comparisons": [
            target_cmp,
            compare(results, "fusebox cluster agent vs pybreaker in memory", "agent_cluster",
                    "pybreaker_memory", None),
            compare(results, "fusebox cluster agent vs per-instance agent", "agent_cluster",
                    "agent_local", None),
            compare(results, "pybreaker in memory vs pybreaker CircuitRedisStorage",
                    "pybreaker_memory", "pybreaker_redis", None),
        ],
        "redis_counts": counts,
        "seconds": time.perf_counter() - started,
    })
    return report


def passed(report: dict[str, Any]) -> bool:
    return all(c.passed is not False for c in report["comparisons"])


def as_json(report: dict[str, Any]) -> str:
    comparisons: list[Comparison] = report["comparisons"]
    out = {
        "machine": report["machine"],
        "budget": report["budget"],
        "link": report["link"],
        "measurements": [m.as_dict() for m in report["measurements"]],
        "comparisons": [{**c.as_dict(), "times_cheaper_best": round(1 / c.ratio_best, 2),
                         "times_cheaper_median": round(1 / c.ratio_median, 2)}
                        for c in comparisons],
        "redis_commands": [c.as_dict() for c in report["redis_counts"]],
        "target_times_cheaper": TIMES_CHEAPER,
        "all_targets_passed": passed(report),
        "seconds": round(report["seconds"], 1),
    }
    return json.dumps(out, indent=2)


def _by_command(commands: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in commands.most_common()) or "none"


def as_text(report: dict[str, Any]) -> str:
    m, b, link = report["machine"], report["budget"], report["link"]
    packages = m["packages"]
    results: list[Measurement] = report["measurements"]
    bare = results[0]
    lines = [
        "Fusebox shared state: per-call cost of a fleet-wide breaker, success path",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['python']}, "
        f"load average {' '.join(map(str, m['load_average']))}",
        "packages: " + ", ".join(f"{k} {packages[k]}" for k in
                                 ("grpcio", "pybreaker", "redis", "redis-server")),
        f"setup: 1 redis-server and 1 fusebox serve --store {report['redis_url']} on loopback; "
        f"breaker consecutiveFailures >= {FAIL_MAX} (pybreaker fail_max={FAIL_MAX})",
        f"budget: {b['repeats']} interleaved repeats of ~{b['target_seconds_per_repeat']:g} s "
        "per variant; ns per call, lower is better",
        *(["QUICK RUN: a smoke test, the figures and verdicts below are not meaningful"]
          if b["quick"] else []),
        "cluster link, checked before timing: policies from the server; first outcome report "
        f"in the Redis store after {link['report_reached_store_ms']:.1f} ms;",
        "  FORCE_OPEN set on the server -> agent open, calls rejected locally, after "
        f"{link['force_open_adopted_ms']:.1f} ms; ResetBreaker -> agent closed after "
        f"{link['reset_adopted_ms']:.1f} ms;",
        f"  during timing the agent made {link['agent_calls_during_timing']:,} calls; the server "
        f"received {link['outcomes_ingested_during_timing']:,} outcomes in reports "
        f"({link['outcomes_stale_during_timing']:,} stale); the Redis store counted "
        f"{link['server_counted_successes']:,} successes",
        *(["  note: fewer outcomes reported than calls: between two flushes the agent keeps a "
           "bounded number of outcomes per breaker (the oldest go first), and a tight calling "
           "loop can keep its flusher behind"]
          if link["outcomes_ingested_during_timing"] < link["agent_calls_during_timing"] else []),
        "",
        f"{'per call':<48} {'best ns':>9} {'median ns':>10} {'overhead':>9} {'loops':>9}",
    ]
    for r in results:
        lines.append(f"  {r.label:<46} {r.best_ns:9.0f} {r.median_ns:10.0f} "
                     f"{r.best_ns - bare.best_ns:9.0f} {r.loops:9d}")
    lines += ["", "targets (ratio of best ns/call, ratio of medians in brackets; "
                  "x cheaper = 1 / ratio)"]
    for c in report["comparisons"]:
        verdict = {True: "PASS", False: "FAIL", None: "info"}[c.passed]
        target = f"  target >= {TIMES_CHEAPER:g}x cheaper" if c.limit is not None else ""
        lines.append(f"  {verdict}  {c.title:<54} {c.ratio_best:7.4f} ({c.ratio_median:.4f}) "
                     f"= {1 / c.ratio_best:7.1f}x cheaper{target}")
    counts: list[CommandBatch] = report["redis_counts"]
    lines += [
        "",
        "redis commands per call (INFO commandstats around a separate batch of calls + "
        f"{SETTLE_SECONDS:g} s settle;",
        "  baseline = the same window with bare fn() calls instead: the control plane's own "
        "background; net = batch - baseline)",
        f"  {'contender':<44} {'calls':>7} {'window s':>8} {'commands':>8} {'baseline':>8} "
        f"{'net/call':>9}",
    ]
    for c in counts:
        lines += [
            f"  {c.label:<44} {c.batch.calls:7d} {c.batch.seconds:8.2f} {c.batch.total:8d} "
            f"{c.baseline.total:8d} {c.net_per_call:9.4f}",
            "    batch:    " + _by_command(c.batch.commands),
            "    baseline: " + _by_command(c.baseline.commands),
            "    net:      " + (", ".join(f"{k} {v:+.0f}" for k, v in c.net().most_common()
                                          if abs(v) >= 0.5) or "none"),
        ]
    lines += [
        "",
        f"all targets: {'PASS' if passed(report) else 'FAIL'} ({report['seconds']:.1f} s)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shared_state",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--repeat", type=int, default=Budget().repeats,
                        help="timed repeats per variant (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=Budget().target_seconds,
                        help="target seconds per repeat (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in a few seconds; figures are not meaningful")
    parser.add_argument("--verbose", action="store_true",
                        help="let the agents log warnings to stderr")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when the target is missed")
    args = parser.parse_args(argv)
    if not args.verbose:
        logging.getLogger("fusebox").setLevel(logging.ERROR)
    if args.quick:
        budget = QUICK
    else:
        budget = Budget(target_seconds=args.seconds, repeats=max(1, args.repeat))
    report = run(budget, args.quick)
    print(as_json(report) if args.json else as_text(report))
    return 1 if args.strict and not passed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
