"""What the scale benchmarks (many agents, soak) share on top of ``cluster_support``.

* ``ScaleWorker``: a ``bench._many_worker`` process (hundreds of AsyncAgents).
* ``HttpUpstream``: the asyncio loopback upstream process.
* ``/proc`` readings: RSS, and CPU use over a window.
* The spec the scale benchmarks apply, with a knob that changes its digest.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.cluster_support import Cleanup, WorkerProcess, cpu_seconds, spawn, stop_process

TRIP_THRESHOLD = 5


class ScaleWorker(WorkerProcess):
    """``python -m bench._many_worker``; the same JSON-lines protocol as ``WorkerProcess``."""

    def __init__(self, cleanup: Cleanup, name: str,
                 events: queue.Queue[dict[str, Any]] | None = None) -> None:
        self.name = name
        self.events = events if events is not None else queue.Queue()
        self.log = cleanup.workdir / f"worker-{name}.log"
        self._stderr = self.log.open("wb")
        self.process = spawn([sys.executable, "-m", "bench._many_worker"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        cleanup.push(self.stop)
        threading.Thread(target=self._read, daemon=True).start()


class HttpUpstream:
    """``python -m bench._http_upstream``: answers 200 on a free loopback port."""

    def __init__(self, cleanup: Cleanup) -> None:
        self.process = spawn([sys.executable, "-m", "bench._http_upstream"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        cleanup.push(lambda: stop_process(self.process, timeout=5))
        assert self.process.stdout is not None
        self.address = f"127.0.0.1:{int(self.process.stdout.readline())}"


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class CpuWindow:
    """CPU use of some processes between ``start()`` and ``stop()`` (1.0 = one core busy)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._cpu0: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._cpu0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._t0
        return {name: (cpu_seconds(pid) - self._cpu0[name]) / elapsed
                for name, pid in self.pids.items()}


def scale_spec(timeout_seconds: int, name: str = "bench-scale", breaker_timeout: str = "60s",
               max_requests: int = 1) -> str:
    """The spec: one shared breaker policy for every ``upstream`` method; ``timeout_seconds``
    only changes the digest (a spec change every agent must apply)."""
    return f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: {name}
scopes: [checkout]
spec:
  policies:
    timeouts:
      general: {timeout_seconds}s
    circuitBreakers:
      shared:
        maxRequests: {max_requests}
        timeout: {breaker_timeout}
        trip: consecutiveFailures >= {TRIP_THRESHOLD}
  targets:
    apps:
      upstream:
        timeout: general
        circuitBreaker: shared
"""


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
