"""The console's live feed under load: the server's cost per connected page (issue 16).

A real ``fusebox serve --console`` (embedded store, loopback, no tokens) holds
1,000 breakers (overrides set ahead of use on 1,000 methods of one app). A
driver thread in this process flips one breaker every ``--interval`` (10 ms)
through gRPC ``SetOverride`` — force-open, then clear, round-robin over the
1,000 — so the server produces ~100 transitions a second, each one audited as
an operator's action is. Pages are SSE clients in another process (this
module again, ``--child pages``), each reading its own
``GET /console/api/fusebox.v1.BreakerService/WatchBreakers`` stream and
counting the live breaker events it receives.

Steps: 0, 1, 10 and 50 connected pages (``--pages``). Each step connects its
pages, waits until every one has its snapshot (``synced``), then measures for
``--seconds``: the server's user + system CPU from ``/proc/<pid>/stat``, the
transitions the driver produced, and each page's received live events. The
figures: server CPU per second, the CPU each page adds (against the 0-page
step), and the slowest and median page's update rate against the produced
rate. Target: the server keeps producing ~100 transitions a second and every
page receives them all (both >= 99% of the nominal 1 / ``--interval``). The
driver's RPCs run on the same event loop as the feeds, so a saturated loop
shows as a lower produced rate, not only as slower pages.

    python -m bench.console_feed [--pages 0,1,10,50] [--seconds 5] [--breakers 1000]

Bounded in time: each step ends after its window; every process is stopped at
the end (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import grpc

from bench.cluster_support import Cleanup, ServeProcess, apply_spec, cpu_seconds, spawn
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, policy_pb2

APP = "bench-target"
SPEC = f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: console-bench
spec:
  policies:
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures >= 5
  targets:
    apps:
      {APP}:
        circuitBreaker: cb
"""
WATCH_PATH = "/console/api/fusebox.v1.BreakerService/WatchBreakers"
READY_DEADLINE = 120.0
TARGET_SHARE = 0.99


def key(i: int) -> policy_pb2.BreakerKey:
    return policy_pb2.BreakerKey(namespace="default", spec="console-bench",
                                 kind=policy_pb2.TARGET_KIND_APP, target=APP, method=f"m{i}")


def override(stub: breaker_pb2_grpc.BreakerServiceStub, i: int, forced: bool) -> None:
    stub.SetOverride(breaker_pb2.SetOverrideRequest(
        key=key(i), override=breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN if forced else 0,
        reason="console bench"), timeout=10)


class Driver:
    """Flips one breaker per interval on an absolute schedule; counts what it produced."""

    def __init__(self, address: str, breakers: int, interval: float) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = breaker_pb2_grpc.BreakerServiceStub(self._channel)
        self._breakers = breakers
        self._interval = interval
        self._stop = threading.Event()
        self.produced = 0
        self._thread = threading.Thread(target=self._run, name="driver", daemon=True)

    def create(self) -> None:
        for i in range(self._breakers):  # created ahead of use, forced open
            override(self._stub, i, forced=True)
        for i in range(self._breakers):
            override(self._stub, i, forced=False)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        flips = 0
        while not self._stop.is_set():
            i = flips % self._breakers
            override(self._stub, i, forced=(flips // self._breakers) % 2 == 0)
            flips += 1
            self.produced = flips
            pause = start + flips * self._interval - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._channel.close()


class Pages:
    """The pages' process: ``count`` SSE readers; counts read over JSON lines."""

    def __init__(self, cleanup: Cleanup, url: str, count: int) -> None:
        self.process = spawn([sys.executable, "-m", "bench.console_feed", "--child", url,
                              "--pages", str(count)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        cleanup.push(self.close)
        self._expect("ready", READY_DEADLINE)

    def counts(self) -> list[int]:
        assert self.process.stdin is not None
        self.process.stdin.write(b'{"cmd": "counts"}\n')
        self.process.stdin.flush()
        reply = self._expect("counts", 30.0)
        counts: list[int] = reply["counts"]
        return counts

    def _expect(self, event: str, deadline: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the pages' process exited before {event!r}")
            message: dict[str, Any] = json.loads(line)
            if message.get("event") == event:
                return message
        raise RuntimeError(f"no {event!r} from the pages' process within {deadline:g}s")

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---- the pages' process ----------------------------------------------------------------

_LIVE = b"\nevent: breaker\n"  # live events carry an id line first; snapshot events do not


async def _read_feed(session: Any, url: str, counts: list[int], index: int,
                     synced: asyncio.Event) -> None:
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"feed {index}: HTTP {response.status}: {await response.text()}")
        tail = b""
        seen_synced = False
        async for chunk in response.content.iter_any():
            text = tail + chunk
            if not seen_synced and b"event: synced" in text:
                seen_synced = True
                synced.set()
                text = text[text.index(b"event: synced"):]
            if seen_synced:
                counts[index] += text.count(_LIVE)
            tail = text[-(len(_LIVE) - 1):]


async def _pages(url: str, count: int) -> None:
    import aiohttp

    counts = [0] * count
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        ready = [asyncio.Event() for _ in range(count)]
        readers = [asyncio.create_task(_read_feed(session, url, counts, i, ready[i]))
                   for i in range(count)]
        await asyncio.gather(*(event.wait() for event in ready))
        print(json.dumps({"event": "ready"}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            if json.loads(line).get("cmd") == "counts":
                print(json.dumps({"event": "counts", "counts": counts}), flush=True)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


# ---- the orchestrator --------------------------------------------------------------------


def measure(server: ServeProcess, driver: Driver, pages: Pages | None,
            seconds: float) -> dict[str, Any]:
    before_pages = pages.counts() if pages else []
    before_cpu, before_produced, start = (cpu_seconds(server.process.pid), driver.produced,
                                          time.monotonic())
    time.sleep(seconds)
    after_cpu, after_produced, elapsed = (cpu_seconds(server.process.pid), driver.produced,
                                          time.monotonic() - start)
    after_pages = pages.counts() if pages else []
    rates = [(a - b) / elapsed for a, b in zip(after_pages, before_pages, strict=True)]
    return {"cpu": (after_cpu - before_cpu) / elapsed,
            "produced": (after_produced - before_produced) / elapsed, "rates": rates}


def run(page_steps: list[int], seconds: float, breakers: int, interval: float) -> bool:
    with Cleanup() as cleanup:
        server = ServeProcess(cleanup, name="console", extra_args=("--console",))
        apply_spec(server.address, SPEC)
        driver = Driver(server.address, breakers, interval)
        driver.create()
        driver.start()
        cleanup.push(driver.stop)
        url = f"http://127.0.0.1:{server.metrics_port}{WATCH_PATH}"
        results: dict[int, dict[str, Any]] = {}
        for count in page_steps:
            pages = Pages(cleanup, url, count) if count else None
            results[count] = measure(server, driver, pages, seconds)
            if pages:
                pages.close()
        driver.stop()
    return report(results, breakers, interval, seconds)


def report(results: dict[int, dict[str, Any]], breakers: int, interval: float,
           seconds: float) -> bool:
    print(f"console feed: {breakers} breakers, a transition every {interval * 1000:g} ms "
          f"(gRPC SetOverride flips), {seconds:g} s per step")
    print(f"{'pages':>5}  {'produced/s':>10}  {'server CPU':>10}  {'CPU per page':>12}  "
          f"{'slowest page/s':>14}  {'median page/s':>13}  {'held':>5}")
    baseline = results.get(0, {}).get("cpu")
    all_held = True
    for count, result in results.items():
        rates, produced = result["rates"], result["produced"]
        per_page = ("" if not count or baseline is None
                    else f"{(result['cpu'] - baseline) / count * 100:.2f}%")
        slowest = min(rates) if rates else None
        nominal = 1 / interval
        held = produced >= TARGET_SHARE * nominal and (
            slowest is None or slowest >= TARGET_SHARE * min(produced, nominal))
        all_held = all_held and held
        print(f"{count:>5}  {produced:>10.1f}  {result['cpu'] * 100:>9.1f}%  {per_page:>12}  "
              f"{'' if slowest is None else f'{slowest:.1f}':>14}  "
              f"{'' if not rates else f'{statistics.median(rates):.1f}':>13}  "
              f"{'yes' if held else 'NO':>5}")
    print(f"target: {1 / interval:g} transitions/s produced and received by every page "
          f"(>= {TARGET_SHARE:.0%}): {'met' if all_held else 'NOT met'}")
    return all_held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", default="0,1,10,50",
                        help="connected pages per step, comma-separated (child: the count)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per step")
    parser.add_argument("--breakers", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.010,
                        help="seconds between transitions")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_pages(args.child, int(args.pages)))
        return
    steps = [int(n) for n in args.pages.split(",")]
    sys.exit(0 if run(steps, args.seconds, args.breakers, args.interval) else 1)


if __name__ == "__main__":
    main()
