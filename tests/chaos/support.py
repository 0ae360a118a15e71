"""What the chaos tests share: a scriptable upstream that can hang, metrics, waiting.

The upstream tells callers apart by the first path segment (each agent process
gets its own base URL ``http://127.0.0.1:PORT/<agent>``), so a test knows which
agent sent the probe that is hanging.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

from fusebox.v1 import breaker_pb2, breaker_pb2_grpc
from tests.support.redis_server import free_port

OK, FAIL, HANG = "ok", "fail", "hang"


class ChaosUpstream:
    """Answers 200 (``ok``), 500 (``fail``) or holds the request (``hang``) until released."""

    def __init__(self) -> None:
        self.mode = OK
        self.hits: list[tuple[str, str]] = []  # (caller, mode it met)
        self.released = threading.Event()
        self._changed = threading.Condition()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mode = upstream.mode
                caller = self.path.strip("/").split("/")[0]
                with upstream._changed:
                    upstream.hits.append((caller, mode))
                    upstream._changed.notify_all()
                if mode == HANG:
                    upstream.released.wait(30)  # bounded: never outlives a test
                status = 200 if mode == OK else 500
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the caller was killed while we held its request

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, caller: str) -> str:
        return f"http://127.0.0.1:{self.port}/{caller}"

    def count(self, mode: str, caller: str | None = None) -> int:
        with self._changed:
            return sum(1 for c, m in self.hits if m == mode and caller in (None, c))

    def wait_for_hit(self, mode: str, deadline: float) -> str:
        """The caller of the first hit that met ``mode``."""
        end = time.monotonic() + deadline
        with self._changed:
            while True:
                for c, m in self.hits:
                    if m == mode:
                        return c
                remaining = end - time.monotonic()
                assert remaining > 0, f"no {mode} hit in {deadline}s"
                self._changed.wait(remaining)

    def __enter__(self) -> ChaosUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()


def metrics_args() -> tuple[tuple[str, ...], int]:
    """``serve`` arguments for a Prometheus endpoint on a free port, and that port."""
    port = free_port()
    return ("--metrics-listen", f"127.0.0.1:{port}"), port


def metric(port: int, name: str) -> float | None:
    """The sum of a metric's samples, or None when the endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"))


def the_breaker(address: str) -> breaker_pb2.Breaker:
    """The one breaker the cluster knows (the chaos specs guard one target)."""
    with grpc.insecure_channel(address) as channel:
        stub = breaker_pb2_grpc.BreakerServiceStub(channel)
        (listed,) = stub.ListBreakers(breaker_pb2.ListBreakersRequest(), timeout=10).breakers
        breaker: breaker_pb2.Breaker = stub.GetBreaker(
            breaker_pb2.GetBreakerRequest(key=listed.key), timeout=10).breaker
        return breaker


def spec(name: str, *, threshold: int = 5, timeout: str = "1s") -> str:
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
        timeout: {timeout}
        trip: consecutiveFailures >= {threshold}
  targets:
    apps:
      upstream:
        circuitBreaker: shared
"""
