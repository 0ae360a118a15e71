"""The Dapr resiliency quickstart, with Fusebox in place of the sidecars, in one command.

Starts the control plane (embedded store in a temporary directory, or
``--store redis://…``), applies ``resiliency.yaml``, starts order-processor and
``--replicas`` checkout replicas, stops order-processor (the quickstart's
Ctrl+C), restarts it, stops everything and prints a summary:

    python examples/quickstart/demo.py                       # the seed's timings
    python examples/quickstart/demo.py --retry-interval 200ms --breaker-timeout 1s
    python examples/quickstart/demo.py --per-instance        # compare: breakers per replica
    python examples/quickstart/demo.py --store redis://127.0.0.1:6379/0

Every line of every process is printed with a ``== NAME ==`` prefix, as
``dapr run`` prefixes ``== APP ==``. ``--summary-json PATH`` writes the
summary figures for scripts and tests (see docs/examples.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
SEED_SPEC = HERE / "resiliency.yaml"
TRIP_THRESHOLD_RE = re.compile(r"consecutiveFailures\s*>=\s*(\d+)")
RECEIVED_RE = re.compile(r"Order received: (\{.*\})")
GO_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")
START_DEADLINE = 60.0
PHASE_DEADLINE = 60.0

_print_lock = threading.Lock()


def say(name: str, line: str) -> None:
    with _print_lock:
        print(f"== {name} == {line}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seconds(duration: str) -> float:
    """``"200ms"``, ``"5s"``, ``"1m"`` as seconds (the Go durations the flags take)."""
    match = GO_DURATION_RE.match(duration.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{duration!r} is not a duration such as 200ms, 5s, 1m")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def go_duration(text: str) -> str:
    seconds(text)  # validates
    return text.strip()


def spec_text(args: argparse.Namespace) -> str:
    """The seed spec, with the retry interval and open timeout rewritten when asked.

    The rewrite is textual so the applied document stays the seed's, line for
    line, except the values changed (``maxInterval`` of a constant policy is
    what the seed sets; Fusebox reads a constant policy's interval from
    ``duration``, whose default is the same 5s).
    """
    text = Path(args.spec).read_text()
    if args.retry_interval is not None:
        text, count = re.subn(r"maxInterval: 5s", f"duration: {args.retry_interval}", text)
        if count != 1:
            raise SystemExit(f"{args.spec}: cannot find retryForever's 'maxInterval: 5s'")
    if args.breaker_timeout is not None:
        text, count = re.subn(r"timeout: 5s", f"timeout: {args.breaker_timeout}", text)
        if count != 1:
            raise SystemExit(f"{args.spec}: cannot find simpleCB's 'timeout: 5s'")
    return text


class Child:
    """A child process whose output lines are printed with a prefix and kept."""

    def __init__(self, name: str, argv: list[str], *, echo: bool = True) -> None:
        self.name = name
        self.lines: list[str] = []
        self.changed = threading.Condition()
        env = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPOSITORY),
                                                            os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPOSITORY, env=env, text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(echo,), daemon=True)
        self._reader.start()

    def _read(self, echo: bool) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip("\n")
            if echo:
                say(self.name, line)
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def count(self, needle: str, since: int = 0) -> int:
        with self.changed:
            return sum(1 for line in self.lines[since:] if needle in line)

    def mark(self) -> int:
        with self.changed:
            return len(self.lines)

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                say("demo", f"{self.name} did not stop in {timeout:g}s; killing it")
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        return self.process.returncode


def wait_until(condition: Callable[[], bool], deadline: float, what: str,
               children: list[Child]) -> bool:
    """Wait (on the children's output) until ``condition``; False after ``deadline`` s."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            say("demo", f"gave up waiting for {what} after {deadline:g}s")
            return False
        for child in children:
            if child.process.poll() is not None and child.name.startswith("checkout"):
                raise SystemExit(f"{child.name} exited with {child.process.returncode}")
        # Woken by any new line of the first child; the timeout re-checks the others.
        first = children[0]
        with first.changed:
            first.changed.wait(0.1)
    return True


def wait_for_server(address: str, server: Child) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    end = time.monotonic() + START_DEADLINE
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if server.process.poll() is not None:
                raise SystemExit(f"the control plane exited with {server.process.returncode}")
            try:
                reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0,
                                     wait_for_ready=True)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > end:
                raise SystemExit(f"the control plane at {address} did not become healthy")
            time.sleep(0.05)  # poll interval between health checks


def fusebox(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusebox.controlplane.cli", *argv], cwd=REPOSITORY,
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPOSITORY)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Dapr resiliency quickstart on Fusebox and summarize it.")
    parser.add_argument("--store", default="",
                        help="control plane store URL (default: embedded, temporary dir)")
    parser.add_argument("--listen", default="",
                        help="control plane address (default: 127.0.0.1 on a free port)")
    parser.add_argument("--replicas", type=int, default=3, help="checkout replicas (3)")
    parser.add_argument("--healthy", type=seconds, default=5.0,
                        help="how long orders flow before order-processor stops (5s)")
    parser.add_argument("--outage", type=seconds, default=20.0,
                        help="minimum time order-processor stays down; the demo also waits "
                             "for a half-open probe to fail (20s)")
    parser.add_argument("--recovery", type=seconds, default=5.0,
                        help="how long orders flow again after recovery (5s)")
    parser.add_argument("--order-interval", type=seconds, default=1.0,
                        help="time between two orders of one replica (1s, as the quickstart)")
    parser.add_argument("--retry-interval", type=go_duration, default=None,
                        help="rewrite retryForever's interval (default: the seed's 5s)")
    parser.add_argument("--breaker-timeout", type=go_duration, default=None,
                        help="rewrite simpleCB's open timeout (default: the seed's 5s)")
    parser.add_argument("--per-instance", action="store_true",
                        help="breakers local to each replica (what Dapr sidecars do)")
    parser.add_argument("--spec", default=str(SEED_SPEC), help="the Resiliency spec to apply")
    parser.add_argument("--workdir", default=None, help="keep data and event files here")
    parser.add_argument("--summary-json", default=None, help="also write the summary here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replicas < 1:
        raise SystemExit("--replicas must be at least 1")
    with tempfile.TemporaryDirectory(prefix="fusebox-demo-") as temporary:
        workdir = Path(args.workdir or temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        summary = run(args, workdir)
    print_summary(summary)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return 0 if summary["orders_lost"] == 0 else 1


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    started = time.time()
    address = args.listen or f"127.0.0.1:{free_port()}"
    op_port = free_port()
    spec = spec_text(args)
    spec_path = workdir / "resiliency.yaml"
    spec_path.write_text(spec)
    threshold_match = TRIP_THRESHOLD_RE.search(spec)
    threshold = int(threshold_match.group(1)) if threshold_match else None
    retry = seconds(args.retry_interval or "5s")
    open_pause = retry  # hold an order as long as retryForever would wait

    serve = [sys.executable, "-m", "fusebox.controlplane.cli", "serve", "--listen", address,
             "--data-dir", str(workdir / "data"), "--log-level", "warning"]
    if args.store:
        serve += ["--store", args.store]
    mode = "per-instance" if args.per_instance else "cluster-wide"
    say("demo", f"control plane on {address} ({args.store or 'embedded store'}), "
                f"{args.replicas} checkout replica(s), {mode} breakers")
    server = Child("controlplane", serve)
    children: list[Child] = []
    order_processors: list[Child] = []
    checkouts: list[Child] = []
    server_transitions: list[dict[str, Any]] = []
    timeline: dict[str, float] = {}
    try:
        wait_for_server(address, server)
        applied = fusebox("apply", "-f", str(spec_path), "--server", address)
        say("fusebox", f"$ fusebox apply -f {spec_path.name}")
        for line in (applied.stdout + applied.stderr).splitlines():
            say("fusebox", line)
        if applied.returncode != 0:
            raise SystemExit("the spec was not applied")

        def start_order_processor() -> Child:
            child = Child("order-processor", [sys.executable, str(HERE / "order_processor.py"),
                                              "--port", str(op_port)])
            order_processors.append(child)
            children.append(child)
            wait_until(lambda: child.count("listening") > 0, START_DEADLINE,
                       "order-processor", [child])
            return child

        order_processor = start_order_processor()
        for replica in range(1, args.replicas + 1):
            argv = [sys.executable, str(HERE / "checkout.py"), "--server", address,
                    "--order-processor", f"http://127.0.0.1:{op_port}",
                    "--replica", str(replica), "--replicas", str(args.replicas),
                    "--order-interval", str(args.order_interval),
                    "--open-pause", str(open_pause),
                    "--cache-path", str(workdir / f"checkout-{replica}.policies.pb"),
                    "--events", str(workdir / f"checkout-{replica}.jsonl")]
            if args.per_instance:
                argv.append("--per-instance")
            checkout = Child(f"checkout-{replica}", argv)
            checkouts.append(checkout)
            children.append(checkout)

        watched = [*checkouts]
        wait_until(lambda: all(c.count("Order passed") > 0 for c in checkouts), START_DEADLINE,
                   "every checkout to pass an order", watched)
        time.sleep(args.healthy)  # the healthy phase is a duration, nothing to wait for

        say("demo", "stopping order-processor (the quickstart's Ctrl+C)")
        marks = [c.mark() for c in checkouts]
        timeline["stopped"] = time.time()
        order_processor.stop()
        deadline = time.monotonic() + args.outage
        wait_until(lambda: any(c.count("from half-open to open", m) > 0
                               for c, m in zip(checkouts, marks, strict=True)),
                   args.outage + PHASE_DEADLINE, "a failed half-open probe", watched)
        time.sleep(max(0.0, deadline - time.monotonic()))  # the rest of the minimum outage

        say("demo", "restarting order-processor")
        marks = [c.mark() for c in checkouts]
        timeline["restarted"] = time.time()
        start_order_processor()
        wait_until(lambda: all(c.count("Order passed", m) > 0
                               for c, m in zip(checkouts, marks, strict=True)),
                   PHASE_DEADLINE, "every checkout to pass an order again", watched)
        timeline["recovered"] = time.time()
        time.sleep(args.recovery)  # the recovery phase is a duration too

        if not args.per_instance:
            shown = fusebox("breakers", "get", "order-processor:orders", "-o", "json",
                            "--server", address)
            if shown.returncode == 0:
                server_transitions = json.loads(shown.stdout).get("recentTransitions", [])
        say("demo", "stopping checkout replicas, order-processor and the control plane")
    finally:
        # Checkouts first: they finish the order in hand while order-processor still runs.
        for child in sorted(children, key=lambda c: c not in checkouts):
            child.stop(timeout=90.0)
        server.stop()
    received = [json.loads(m.group(1))["orderId"]
                for child in order_processors for line in child.lines
                if (m := RECEIVED_RE.search(line))]
    events = [load_events(workdir / f"checkout-{i}.jsonl") for i in range(1, args.replicas + 1)]
    return summarize(args, threshold, events, received, server_transitions, timeline,
                     time.time() - started)


def load_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals in progress at one instant."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda p: (p[0], p[1]))  # an end before a start at the same instant
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def summarize(args: argparse.Namespace, threshold: int | None,
              events: list[list[dict[str, Any]]], received: list[int],
              server_transitions: list[dict[str, Any]], timeline: dict[str, float],
              duration: float) -> dict[str, Any]:
    every = [e for replica in events for e in replica]
    sent = {e["order"] for e in every if e["event"] == "sent"}
    passed = {e["order"] for e in every if e["event"] == "passed"}
    attempts = [e for e in every if e["event"] == "attempt"]
    failed = [a for a in attempts if not a["ok"]]
    probes = [a for a in attempts if a["state"] == "half-open"]
    return {
        "mode": "per-instance" if args.per_instance else "cluster",
        "store": args.store or "embedded",
        "replicas": args.replicas,
        "trip_threshold": threshold,
        "orders_sent": len(sent),
        "orders_passed": len(passed),
        "orders_received": len(set(received)),
        "orders_received_twice": len(received) - len(set(received)),
        "orders_lost": len(sent - set(received)),
        "failed_calls_to_dead_service": len(failed),
        "failed_calls_while_closed": sum(1 for a in failed if a["state"] == "closed"),
        "half_open_probes": len(probes),
        "half_open_probes_failed": sum(1 for a in probes if not a["ok"]),
        "max_concurrent_probes": max_overlap([(a["start"], a["end"]) for a in probes]),
        "transitions": [
            [f"{e['from']}>{e['to']}" for e in replica if e["event"] == "state"]
            for replica in events
        ],
        "server_transitions": [f"{t['from']}>{t['to']}" for t in server_transitions],
        "timeline": timeline,
        "duration_seconds": round(duration, 1),
    }


def print_summary(s: dict[str, Any]) -> None:
    threshold = s["trip_threshold"]
    mode = ("cluster-wide breakers" if s["mode"] == "cluster"
            else "per-instance breakers (one per replica)")
    rows = [
        ("breakers", f"{mode}, {s['replicas']} checkout replica(s), store {s['store']}"),
        ("orders sent", s["orders_sent"]),
        ("orders received", s["orders_received"]),
        ("orders lost", s["orders_lost"]),
        ("failed calls to the dead service", s["failed_calls_to_dead_service"]),
        ("  while the breaker was closed", f"{s['failed_calls_while_closed']}"
         + (f" (trip threshold {threshold}; per-instance breakers need at least "
            f"{threshold * s['replicas']})" if threshold else "")),
        ("  failed half-open probes", s["half_open_probes_failed"]),
        ("half-open probes sent", f"{s['half_open_probes']} "
                                  f"(at most {s['max_concurrent_probes']} at a time)"),
        ("run time", f"{s['duration_seconds']}s"),
    ]
    with _print_lock:
        print("== summary ==")
        for label, value in rows:
            print(f"  {label:<34} {value}")
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
