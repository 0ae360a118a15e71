"""What the cluster-wide breaker benchmarks share: real processes, started and always stopped.

* ``Cleanup``: a stack of stop functions run in reverse on exit, on Ctrl-C and on
  SIGTERM (turned into ``KeyboardInterrupt``); children also get ``SIGKILL``
  from the kernel if the benchmark itself dies (``PR_SET_PDEATHSIG``).
* ``ServeProcess``: ``fusebox serve`` on a free loopback port (quiet logs, metrics on).
* ``WorkerProcess``: a ``bench._cluster_worker`` process driven by JSON lines.
* gRPC helpers for the spec and breaker services, and percentiles.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from fusebox.v1 import (
    breaker_pb2,
    breaker_pb2_grpc,
    policy_pb2,
    spec_pb2,
    spec_pb2_grpc,
)
from tests.support.processes import wait_for_health
from tests.support.redis_server import RedisServer, free_port

REPOSITORY = Path(__file__).resolve().parent.parent
START_DEADLINE = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the benchmark process dies, however it dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the normal cleanup path still stops the children


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FUSEBOX_SERVER"}
    env["PYTHONPATH"] = str(REPOSITORY)
    return env


def spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(argv), cwd=REPOSITORY, env=child_env(),
                            preexec_fn=_die_with_parent, **kwargs)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Cleanup:
    """``with Cleanup() as cleanup: cleanup.push(stop)``: stops run in reverse, always."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []
        self._previous: Any = None
        self.workdir = Path(tempfile.mkdtemp(prefix="fusebox-bench-"))

    def push(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def __enter__(self) -> Cleanup:
        def on_term(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        self._previous = signal.signal(signal.SIGTERM, on_term)
        return self

    def __exit__(self, *exc: object) -> None:
        # Ctrl-C during cleanup must not leave children behind: ignore it meanwhile.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self._stops:
                stop = self._stops.pop()
                try:
                    stop()
                except Exception as e:  # keep stopping the others
                    print(f"cleanup: {e!r}", file=sys.stderr)
            import shutil
            shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, self._previous)


def start_redis(cleanup: Cleanup) -> RedisServer:
    redis = RedisServer(cleanup.workdir / "redis", appendonly=False)
    cleanup.push(redis.stop)
    redis.start()
    return redis


class ServeProcess:
    """``python -m fusebox.controlplane.cli serve``: one control-plane replica."""

    def __init__(self, cleanup: Cleanup, *, store_url: str | None = None, name: str = "serve",
                 log_level: str = "warning", cpus: set[int] | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log = cleanup.workdir / f"{name}-{self.port}.log"
        argv = [sys.executable, "-m", "fusebox.controlplane.cli", "serve", "--listen", self.address,
                "--data-dir", str(cleanup.workdir / f"data-{self.port}"),
                "--log-level", log_level, "--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        if store_url:
            argv += ["--store", store_url]
        argv += extra_args
        with self.log.open("ab") as log_file:
            self.process = spawn(argv, stdout=log_file, stderr=subprocess.STDOUT)
        cleanup.push(lambda: stop_process(self.process))
        if cpus is not None:
            os.sched_setaffinity(self.process.pid, cpus)
        wait_for_health(self.address, health_pb2.HealthCheckResponse.SERVING,
                        deadline=START_DEADLINE, process=self.process, log=self.log)

    def metric(self, name: str) -> float:
        """The sum of every sample of a Prometheus metric (0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def apply_spec(address: str, yaml_text: str) -> None:
    with grpc.insecure_channel(address) as channel:
        spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=yaml_text, source_name="bench"), timeout=30
        )


def list_breakers(address: str) -> list[breaker_pb2.Breaker]:
    with grpc.insecure_channel(address) as channel:
        reply = breaker_pb2_grpc.BreakerServiceStub(channel).ListBreakers(
            breaker_pb2.ListBreakersRequest(), timeout=10
        )
    return list(reply.breakers)


def get_breaker(address: str, key: policy_pb2.BreakerKey) -> breaker_pb2.Breaker:
    with grpc.insecure_channel(address) as channel:
        reply = breaker_pb2_grpc.BreakerServiceStub(channel).GetBreaker(
            breaker_pb2.GetBreakerRequest(key=key), timeout=10
        )
    breaker: breaker_pb2.Breaker = reply.breaker
    return breaker


def reset_breaker(address: str, key: policy_pb2.BreakerKey) -> None:
    with grpc.insecure_channel(address) as channel:
        breaker_pb2_grpc.BreakerServiceStub(channel).ResetBreaker(
            breaker_pb2.ResetBreakerRequest(key=key, reason="benchmark round"), timeout=10
        )


class WorkerProcess:
    """``python -m bench._cluster_worker`` (or ``module``): commands on stdin, JSON events
    on stdout.

    Closing stdin stops the worker (so does the benchmark's death).
    """

    def __init__(self, cleanup: Cleanup, name: str, cpus: set[int] | None = None,
                 events: queue.Queue[dict[str, Any]] | None = None,
                 module: str = "bench._cluster_worker") -> None:
        self.name = name
        # Several workers may share one queue: each event names its worker.
        self.events: queue.Queue[dict[str, Any]] = events if events is not None else queue.Queue()
        self.log = cleanup.workdir / f"worker-{name}.log"
        self._stderr = self.log.open("wb")
        self.process = spawn([sys.executable, "-m", module],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        if cpus is not None:
            os.sched_setaffinity(self.process.pid, cpus)
        cleanup.push(self.stop)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put({**json.loads(line), "worker": self.name})
        self.events.put({"event": "exited", "worker": self.name})

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()

    def next_event(self, deadline: float) -> dict[str, Any]:
        """The next event, waiting until ``deadline`` (time.monotonic()) at most."""
        try:
            event = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"worker {self.name}: no event in time; log:\n"
                               f"{self.log.read_text()[-2000:]}") from None
        if event["event"] == "exited":
            raise RuntimeError(f"worker {self.name} exited; log:\n"
                               f"{self.log.read_text()[-3000:]}")
        if event["event"] == "error":
            raise RuntimeError(f"worker {self.name}: {event['error']}")
        return event

    def wait_for(self, kind: str, deadline: float,
                 seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The next event of ``kind``; events of other kinds go to ``seen``."""
        while True:
            event = self.next_event(deadline)
            if event["event"] == kind:
                return event
            if seen is not None:
                seen.append(event)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                stop_process(self.process, timeout=5)
        self._stderr.close()


def upstream_breaker_spec(name: str, threshold: int, open_timeout_ms: int) -> str:
    """A Resiliency spec for app ``checkout``: one breaker on app ``upstream``
    (``consecutiveFailures >= threshold``, ``maxRequests: 1``)."""
    return f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: {name}
scopes: [checkout]
spec:
  policies:
    circuitBreakers:
      shared:
        maxRequests: 1
        timeout: {open_timeout_ms}ms
        trip: consecutiveFailures >= {threshold}
  targets:
    apps:
      upstream:
        circuitBreaker: shared
"""


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 30 values is the largest but none)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def machine_line() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {len(os.sched_getaffinity(0))} CPUs, CPython "
            f"{sys.version.split()[0]}, grpcio {grpc.__version__}, load average {load}")


@contextlib.contextmanager
def time_bound(seconds: int, what: str) -> Iterator[None]:
    """Interrupt the block (``KeyboardInterrupt``, so ``Cleanup`` stops every child)
    once ``seconds`` have passed: the hard bound of a benchmark run."""

    def out_of_time(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"{what} reached after {seconds}s")

    previous = signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def dump_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def next_shared_event(events: queue.Queue[dict[str, Any]], workers: dict[str, WorkerProcess],
                      deadline: float) -> dict[str, Any]:
    """The next event of any worker sharing ``events``; raises on a worker's error or exit."""
    try:
        event = events.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise TimeoutError("no worker event before the deadline") from None
    if event["event"] in ("exited", "error"):
        worker = workers[event["worker"]]
        raise RuntimeError(f"worker {worker.name}: {event.get('error', 'exited')}; log:\n"
                           f"{worker.log.read_text()[-3000:]}")
    return event
