"""serviceA of the failsafe-go walk-through: calls serviceB through the Fusebox agent.

``GET /`` calls serviceB with an ``httpx.Client`` whose transport is Fusebox's
(``FuseboxTransport``): the timeout, retry, circuit breaker and fallback come
from the control plane's spec for app-id ``service-a`` (target app
``service-b``), not from code. It logs JSON lines as the post's slog does:
``Connection timed out``, ``Retry 1 after delay of 1s (serviceB sent
Retry-After: 1)``, ``circuit breaker state changed from closed to open``,
``Fallback executed result``, and one ``200: OK`` / ``500: Internal Server
Error`` line per request.

``--app-retries N`` is the post's own loop around the breaker step: when the
breaker rejects a call, or serviceB still answers 503, wait ``--app-pause``
and send again, N times at most.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from fusebox.agent import Agent, BreakerOpenError
from fusebox.agent.events import FallbackEvent, RetryEvent, StateChangeEvent
from fusebox.agent.integrations.httpx import FuseboxTransport

_output_lock = threading.Lock()


def log(level: str, msg: str, **fields: Any) -> None:
    line = json.dumps({"time": datetime.now().astimezone().isoformat(), "level": level,
                       "msg": msg, **fields})
    with _output_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def is_timeout(error: BaseException | None) -> bool:
    return isinstance(error, (TimeoutError, httpx.TimeoutException))


def main() -> int:
    parser = argparse.ArgumentParser(description="serviceA: calls serviceB through the agent")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--service-b", default="http://127.0.0.1:3001")
    parser.add_argument("--server", required=True, help="control plane HOST:PORT")
    parser.add_argument("--cache-path", default=None)
    parser.add_argument("--app-retries", type=int, default=0)
    parser.add_argument("--app-pause", type=float, default=1.0)
    args = parser.parse_args()

    with Agent(app_id="service-a", server=args.server, cache_path=args.cache_path) as fb:
        @fb.on_retry
        def retried(e: RetryEvent) -> None:
            if is_timeout(e.error):
                log("INFO", "Connection timed out")
            retry_after = e.outcome.retry_after  # what the failed attempt's response asked for
            if retry_after is None:
                log("INFO", f"Retry {e.attempt - 1} after delay of {e.delay:g}s",
                    delay_ns=int(e.delay * 1e9))
            else:
                log("INFO", f"Retry {e.attempt - 1} after delay of {e.delay:g}s "
                            f"(serviceB sent Retry-After: {retry_after:g})",
                    delay_ns=int(e.delay * 1e9), retry_after_ns=int(retry_after * 1e9))

        @fb.on_state_change
        def changed(e: StateChangeEvent) -> None:
            log("INFO", f"circuit breaker state changed from {e.from_state} to {e.to_state}")

        @fb.on_fallback
        def fell_back(e: FallbackEvent) -> None:
            log("INFO", "Fallback executed result", policy=e.policy)

        client = httpx.Client(transport=FuseboxTransport(fb, app="service-b"))

        def call_b() -> tuple[int, bytes]:
            """(status, body) for the caller of serviceA, after the policies did their part."""
            for attempt in range(args.app_retries + 1):
                last = attempt == args.app_retries
                try:
                    response = client.get(args.service_b)
                except BreakerOpenError as exc:
                    if last:
                        return 500, str(exc).encode()
                except (httpx.HTTPError, TimeoutError) as exc:
                    if is_timeout(exc):
                        log("INFO", "Connection timed out")
                    return 500, (str(exc) or type(exc).__name__).encode()
                else:
                    if response.status_code != 503 or last:
                        break
                time.sleep(args.app_pause)  # the post's own pause between its retries
            if response.status_code != 200:
                return 500, f"{args.service_b}: {response.status_code}".encode()
            message = response.json().get("message", "")
            body = {"messageA": "hello from service A", "messageB": message}
            return 200, json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                started = time.monotonic()
                status, body = call_b()
                latency = time.monotonic() - started
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                words = "OK" if status == 200 else "Internal Server Error"
                log("INFO" if status == 200 else "ERROR", f"{status}: {words}",
                    latency=int(latency * 1e9), status=status, length=len(body))

            def log_message(self, *a: Any) -> None:
                pass

        while fb.policies is None or not fb.policies.targets:
            time.sleep(0.05)  # poll for the first policy snapshot
        server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        log("INFO", f"serviceA listening on http://127.0.0.1:{args.port}")
        server.serve_forever()
        server.server_close()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
