"""What a guarded call costs on the success path, and what it sends over the network.

    python -m bench.agent_overhead            # human-readable report (also: make bench)
    python -m bench.agent_overhead --json     # the same figures as JSON on stdout

One run measures, side by side (issue 3, "Speed"):

1. sync: the agent with a closed breaker only (a handle's ``.call`` and
   ``@fb.protect``) vs pybreaker's in-memory ``CircuitBreaker.call`` and a bare
   call. Target: agent ``.call`` / pybreaker <= 0.6 (issue 12), ``@protect`` < 1.
2. sync: the agent with retry (constant, maxRetries 2) + breaker vs tenacity's
   ``@retry(stop=stop_after_attempt(3))``. Target: agent ``.call`` / tenacity <= 0.12
   (issue 12), ``@protect`` <= 1/5.
3. the same on asyncio (``AsyncAgent``; pybreaker via ``calling()``; tenacity
   on an ``async def``).
4. with the otel extra (issue 15): the same hot paths by agents made as without
   the extra, with the OpenTelemetry API and no SDK (a no-op meter), and with an
   SDK meter and reader. Target: no-op meter / no extra <= 1.10.
5. zero network I/O per call: both agents linked to a real control plane, the
   messages they send counted on the wire (see ``bench.link_traffic``).

Ratios use the best repeat of each variant (the least disturbed by other load,
as ``timeit`` advises); the ratio of medians is printed beside it. Targets are
printed as PASS/FAIL; the exit status is 0 unless ``--strict`` and a target
failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

from bench import hot_path, link_traffic
from bench.hot_path import Comparison, TelemetrySection
from bench.link_traffic import LinkReport, LinkSection
from bench.timing import Budget, Measurement

QUICK = Budget(target_seconds=0.01, repeats=2, max_loops=50_000, warmup_loops=200)
BATCHES = (1_000, 100_000)
QUICK_BATCHES = (1_000, 10_000)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for package in ("grpcio", "protobuf", "pybreaker", "tenacity", "opentelemetry-api",
                    "opentelemetry-sdk"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
    }


def run(budget: Budget, batches: tuple[int, ...], with_link: bool) -> dict[str, Any]:
    started = time.perf_counter()
    sync_results, sync_comparisons = hot_path.sync_section(budget)
    async_results, async_comparisons = hot_path.async_section(budget, sync_results)
    telemetry = hot_path.telemetry_section(budget)
    links = link_traffic.run(batches) if with_link else None
    return {
        "machine": machine(),
        "budget": {"target_seconds_per_repeat": budget.target_seconds,
                   "repeats": budget.repeats, "max_loops": budget.max_loops},
        "sync": sync_results,
        "async": async_results,
        "comparisons": sync_comparisons + async_comparisons + telemetry.comparisons,
        "telemetry": telemetry,
        "links": links,
        "seconds": time.perf_counter() - started,
    }


def as_json(report: dict[str, Any]) -> str:
    comparisons: list[Comparison] = report["comparisons"]
    links: LinkSection | None = report["links"]
    out = {
        "machine": report["machine"],
        "budget": report["budget"],
        "measurements": {
            "sync": [m.as_dict() for m in report["sync"]],
            "async": [m.as_dict() for m in report["async"]],
        },
        "telemetry": report["telemetry"].as_dict(),
        "comparisons": [c.as_dict() for c in comparisons],
        "network": None if links is None else links.as_dict(),
        "all_targets_passed": all_passed(report),
        "seconds": round(report["seconds"], 1),
    }
    return json.dumps(out, indent=2)


def all_passed(report: dict[str, Any]) -> bool:
    comparisons: list[Comparison] = report["comparisons"]
    links: LinkSection | None = report["links"]
    return all(c.passed is not False for c in comparisons) and (links is None or links.passed)


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "info"}[passed]


def as_text(report: dict[str, Any]) -> str:
    m, b = report["machine"], report["budget"]
    lines = [
        "Fusebox agent overhead: per guarded call, success path",
        f"machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['python']}, "
        f"load average {' '.join(map(str, m['load_average']))}",
        "packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"budget: {b['repeats']} interleaved repeats of ~{b['target_seconds_per_repeat']:g} s "
        "per variant; ns per call, lower is better",
        *(["QUICK RUN: a smoke test, the figures and verdicts below are not meaningful"]
          if b.get("quick") else []),
        "",
    ]
    for title, results in (("sync", report["sync"]), ("async", report["async"])):
        lines += _measurement_table(title, results)
    telemetry: TelemetrySection = report["telemetry"]
    if telemetry.skipped:
        lines += [f"with the otel extra: skipped, {telemetry.skipped}", ""]
    for title, results in (("sync, with the otel extra", telemetry.sync),
                           ("async, with the otel extra", telemetry.asyncio)):
        if results:
            lines += _measurement_table(title, results, baseline=False)
    if telemetry.sdk_checked:
        lines += [f"  {telemetry.sdk_checked}", ""]
    lines.append("targets (ratio of best ns/call; ratio of medians in brackets)")
    for c in report["comparisons"]:
        lines.append(f"  {_verdict(c.passed)}  {c.title:<50} {c.ratio_best:6.3f} "
                     f"({c.ratio_median:.3f})  target {c.target_text}")
    links: LinkSection | None = report["links"]
    if links is not None:
        for link in links.reports:
            lines += ["", *_link_lines(link)]
        if links.late_grpc_events:
            lines.append(f"  note: {links.late_grpc_events} grpc.aio event(s) reached the sync "
                         "link's loop after it closed (grpc multi-loop limitation; harmless)")
    lines += ["", f"all targets: {'PASS' if all_passed(report) else 'FAIL'} "
                  f"({report['seconds']:.1f} s)"]
    return "\n".join(lines)


def _measurement_table(title: str, results: list[Measurement],
                       baseline: bool = True) -> list[str]:
    """Each result; with ``baseline``, the overhead over the first one (the bare call)."""
    bare = results[0]
    overhead_title = "overhead" if baseline else ""
    lines = [f"{title:<48} {'best ns':>9} {'median ns':>10} {overhead_title:>9} {'loops':>9}"]
    for r in results:
        overhead = f"{r.best_ns - bare.best_ns:9.0f}" if baseline else " " * 9
        lines.append(f"  {r.label:<46} {r.best_ns:9.0f} {r.median_ns:10.0f} "
                     f"{overhead} {r.loops:9d}")
    return [*lines, ""]


def _link_lines(link: LinkReport) -> list[str]:
    sent, received = link.connect_sent, link.connect_received
    lines = [
        f"network I/O: {link.flavour} linked to a control plane on loopback "
        "(counted on the wire by a proxy)",
        f"  at connect: agent -> server {sent.grpc_messages} gRPC messages "
        f"({_contents(sent.contents)}; {sent.bytes} bytes), server -> agent "
        f"{received.grpc_messages} ({_contents(received.contents)}; {received.bytes} bytes)"
        + ("" if link.counter_works else "  <- no hello/ACK decoded: the counter is broken"),
        f"  {'target':<24} {'calls':>7} {'ns/call':>7} {'msgs sent':>9} {'reports':>7} "
        f"{'outcomes':>8} {'bytes':>6} {'msgs recv':>9} {'syscalls r/w':>12}",
    ]
    for batch in link.batches:
        syscalls = batch.thread_syscalls
        io = "n/a" if syscalls is None else f"{syscalls.reads}/{syscalls.writes}"
        lines.append(
            f"  {batch.target:<24} {batch.calls:7d} {batch.ns_per_call:7.0f} "
            f"{batch.sent.grpc_messages:9d} {batch.sent.contents.get('report', 0):7d} "
            f"{batch.sent.contents.get('outcomes', 0):8d} {batch.sent.bytes:6d} "
            f"{batch.received.grpc_messages:9d} {io:>12}"
        )
    if any(0 < b.sent.contents.get("outcomes", 0) < b.calls for b in link.batches):
        lines.append("  note: fewer outcomes reported than calls: between two flushes the agent "
                     "keeps a bounded number of outcomes per breaker, and a batch that never "
                     "yields to the event loop gives the flusher no chance to run")
    lines.append(f"  {_verdict(link.passed)}  {link.flavour}: < 1 message per 1,000 calls in "
                 f"batches of >= {link_traffic.RATE_MIN_CALLS:,} calls; no read/write syscall "
                 "by the calling thread")
    return lines


def _contents(contents: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(contents.items())) or "nothing decoded"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_overhead",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--repeat", type=int, default=Budget().repeats,
                        help="timed repeats per variant (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=Budget().target_seconds,
                        help="target seconds per repeat (default %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run in a few seconds; figures are not meaningful")
    parser.add_argument("--no-link", action="store_true",
                        help="skip the control-plane section (network I/O count)")
    parser.add_argument("--verbose", action="store_true",
                        help="let the agents and the server log warnings to stderr")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed")
    args = parser.parse_args(argv)
    if not args.verbose:
        # The agents' own log lines (connect, disconnect at close) would interleave the report.
        logging.getLogger("fusebox").setLevel(logging.ERROR)
    if args.quick:
        budget, batches = QUICK, QUICK_BATCHES
    else:
        budget = Budget(target_seconds=args.seconds, repeats=max(1, args.repeat))
        batches = BATCHES
    report = run(budget, batches, with_link=not args.no_link)
    report["budget"]["quick"] = args.quick
    print(as_json(report) if args.json else as_text(report))
    return 1 if args.strict and not all_passed(report) else 0


if __name__ == "__main__":
    sys.exit(main())
