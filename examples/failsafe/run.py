"""The failsafe-go walk-through, step by step, on Fusebox.

For each step: say what it demonstrates and what to look for, apply the
step's spec (``specs/STEP.yaml``) to a control plane, start serviceB
(unreliable on purpose, seeded) and serviceA (calls serviceB through the
agent's httpx transport), send a few requests to serviceA as the post does
with curl, print every process's output, stop them. The summary at the end
gives each step's figures and the ``Retry-After`` values honoured, in order.

    python examples/failsafe/run.py --step timeout|retry|breaker|fallback|composition|all
    python examples/failsafe/run.py --step all --seed 7 --summary-json out.json

Steps share one control plane (embedded store in a temporary directory, or
``--store``); each step resets the breaker so it starts closed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent.parent
START_DEADLINE = 60.0
_print_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the post: what it shows, what serviceB does, how many curls."""

    title: str
    shows: str  # the headline printed before the step: what it demonstrates
    look_for: str  # what to look for in the lines that follow
    service_b: tuple[str, ...]
    requests: int
    app_retries: int = 0


STEPS: dict[str, Step] = {
    # The post's serviceB sleeps 5s; anything over the 1s timeout shows the same.
    "timeout": Step(
        "Timeout (1s) against a slow serviceB",
        "a 1s timeout cuts every call to serviceB, which takes 2s to answer",
        '"Connection timed out", then "500: Internal Server Error" with a "latency" of about '
        "1000000000 (ns: 1s), while serviceB still answers after 2s",
        ("--delay", "2"), 2),
    # serviceB alternates Retry-After 2 and 1, so the honoured waits visibly differ
    # from the backoff's 1s, 2s, 4s (the post always sends 1).
    "retry": Step(
        "Retry 503 with backoff, honouring Retry-After",
        "each 503 is retried after the Retry-After serviceB sends (2, then 1, in turn), "
        "not after the backoff's 1s, 2s, 4s",
        '"Retry N after delay of Xs (serviceB sent Retry-After: X)": every wait is the '
        "header's value; after 3 retries a 503 becomes a 500",
        ("--fail-rate", "0.5", "--retry-after", "2,1"), 4),
    "breaker": Step(
        "Circuit breaker (the post's serviceA retries 3 times itself)",
        "a circuit breaker opens on the first failure, rejects calls for 1s, "
        "then lets one probe through",
        '"circuit breaker state changed from closed to open", "open to half-open", then '
        '"half-open to closed" (the probe passed) or "to open" (it failed); serviceA\'s own '
        "loop (3 tries, 1s apart) rides the open breaker out",
        ("--fail-rate", "0.5", "--sleep-rate", "0.5", "--sleep", "0.5"), 3,
        app_retries=3),
    "fallback": Step(
        "Fallback: answer for serviceB when it fails",
        "a fallback answers for serviceB whenever it fails with a 503",
        '"Fallback executed result" and a 200 whose messageB is "error accessing service B", '
        "once per 503",
        ("--fail-rate", "0.5"), 4),
    "composition": Step(
        "Composition: fallback(retry(breaker(timeout(call))))",
        "all four at once, nested as the post nests them: fallback(retry(breaker(timeout(call))))",
        "timeouts and retries inside one request, the breaker opening (an open breaker stops "
        "the retries at once) and the fallback answering instead: every curl gets a 200",
        ("--fail-rate", "0.5", "--sleep-rate", "0.5", "--sleep", "1.5"), 3),
}


def say(name: str, line: str) -> None:
    with _print_lock:
        print(f"== {name} == {line}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env() -> dict[str, str]:
    paths = [str(REPOSITORY), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(filter(None, paths)))


class Child:
    """A process whose output is printed with a prefix and kept."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=REPOSITORY,
                                        env=child_env(), text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            say(self.name, raw.rstrip("\n"))
            with self.changed:
                self.lines.append(raw.rstrip("\n"))
                self.changed.notify_all()

    def wait_for(self, needle: str) -> None:
        end = time.monotonic() + START_DEADLINE
        with self.changed:
            while not any(needle in line for line in self.lines):
                if self.process.poll() is not None or time.monotonic() > end:
                    raise SystemExit(f"{self.name} did not print {needle!r}")
                self.changed.wait(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)


def fusebox(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusebox.controlplane.cli", *argv], cwd=REPOSITORY,
                          capture_output=True, text=True, check=False, env=child_env())


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
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1.0,
                                     wait_for_ready=True)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > end:
                raise SystemExit(f"the control plane at {address} did not become healthy")
            time.sleep(0.05)  # poll interval between health checks


def curl(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def run_step(name: str, step: Step, number: str, address: str, seed: int,
             workdir: Path) -> dict[str, Any]:
    say("step", f"{number} {name}: {step.shows}")
    say("step", f"look for: {step.look_for}")
    applied = fusebox("apply", "-f", str(HERE / "specs" / f"{name}.yaml"), "--server", address)
    say("fusebox", f"$ fusebox apply -f examples/failsafe/specs/{name}.yaml")
    for line in (applied.stdout + applied.stderr).splitlines():
        say("fusebox", line)
    if applied.returncode != 0:
        raise SystemExit(f"the {name} spec was not applied")
    # A breaker left open by an earlier step would skew this one; unknown is fine.
    fusebox("breakers", "reset", "service-b", "--reason", f"failsafe step {name}",
            "--server", address)
    port_a, port_b = free_port(), free_port()
    service_b = Child("serviceB", [sys.executable, str(HERE / "service_b.py"), "--port",
                                   str(port_b), "--seed", str(seed), *step.service_b])
    service_a = Child("serviceA", [sys.executable, str(HERE / "service_a.py"), "--port",
                                   str(port_a), "--service-b", f"http://127.0.0.1:{port_b}",
                                   "--server", address, "--app-retries", str(step.app_retries),
                                   "--cache-path", str(workdir / f"service-a-{name}.pb")])
    responses: list[dict[str, Any]] = []
    try:
        service_b.wait_for("listening")
        service_a.wait_for("listening")
        for _ in range(step.requests):
            say("curl", f"$ curl http://127.0.0.1:{port_a}")
            status, body = curl(f"http://127.0.0.1:{port_a}")
            say("curl", f"{status} {body}")
            responses.append({"status": status, "body": body})
    finally:
        service_a.stop()
        service_b.stop()
    logged = [json.loads(line) for line in service_a.lines if line.startswith("{")]
    messages = [entry["msg"] for entry in logged]
    retries = [e for e in logged if "delay_ns" in e]
    return {
        "title": step.title,
        "responses": responses,
        "timeouts": messages.count("Connection timed out"),
        "retry_delays": [e["delay_ns"] / 1e9 for e in retries],
        # Per retry, in order: the Retry-After the failed attempt carried (None: none).
        "retry_after": [e["retry_after_ns"] / 1e9 if "retry_after_ns" in e else None
                        for e in retries],
        "transitions": [m.removeprefix("circuit breaker state changed from ").replace(" to ", ">")
                        for m in messages if m.startswith("circuit breaker state changed")],
        "fallbacks": messages.count("Fallback executed result"),
        "service_b_statuses": [int(line.split(" - ")[1].split()[0])
                               for line in service_b.lines if " - " in line],
        "service_b_retry_after": [int(line.rsplit("Retry-After: ", 1)[1].rstrip(")"))
                                  for line in service_b.lines if "Retry-After: " in line],
    }


def retry_after_line(result: dict[str, Any]) -> str | None:
    """The Retry-After values honoured, in order, for the summary; None without any."""
    pairs = [(sent, waited) for sent, waited in zip(result["retry_after"], result["retry_delays"],
                                                     strict=True) if sent is not None]
    if not pairs:
        return None
    shown = [f"{sent:g}s" if sent == waited else f"{sent:g}s (waited {waited:g}s)"
             for sent, waited in pairs]
    honoured = sum(1 for sent, waited in pairs if sent == waited)
    return (f"Retry-After honoured, in order: {', '.join(shown)} "
            f"({honoured} of {len(pairs)} retries waited exactly what serviceB asked)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the failsafe-go walk-through on Fusebox.")
    parser.add_argument("--step", default="all", choices=[*STEPS, "all"])
    parser.add_argument("--seed", type=int, default=7, help="serviceB's random seed")
    parser.add_argument("--store", default="", help="control plane store (default: embedded)")
    parser.add_argument("--summary-json", default=None, help="write per-step figures here")
    args = parser.parse_args(argv)
    names = list(STEPS) if args.step == "all" else [args.step]

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fusebox-failsafe-") as temporary:
        workdir = Path(temporary)
        address = f"127.0.0.1:{free_port()}"
        serve = [sys.executable, "-m", "fusebox.controlplane.cli", "serve", "--listen", address,
                 "--data-dir", str(workdir / "data"), "--log-level", "warning"]
        server = Child("controlplane", serve + (["--store", args.store] if args.store else []))
        try:
            wait_for_server(address, server)
            for index, name in enumerate(names, 1):
                number = f"[{index}/{len(names)}]"
                results[name] = run_step(name, STEPS[name], number, address, args.seed, workdir)
        finally:
            server.stop()
    for name, result in results.items():
        statuses = ", ".join(str(r["status"]) for r in result["responses"])
        say("summary", f"{name}: responses [{statuses}], timeouts {result['timeouts']}, "
                       f"retries {len(result['retry_delays'])}, "
                       f"breaker {' '.join(result['transitions']) or '-'}, "
                       f"fallbacks {result['fallbacks']}")
        if (line := retry_after_line(result)) is not None:
            say("summary", f"{name}: {line}")
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
