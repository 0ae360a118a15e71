"""checkout on Kubernetes: posts ``{"orderId": n}`` to order-processor through the agent.

The agent is ``Agent.from_env()``: its server, app-id, namespace, instance id,
token, CA and cache directory are the ``FUSEBOX_*`` variables the Deployment
sets (docs/deploy.md). ``GET /readyz`` on ``$HEALTH_PORT`` (8080) answers 200
once the agent's initial fetch is over (``fb.ready``), 503 before: the pod's
readiness probe.

An order is never dropped: the spec's retryForever retries a failing order
until the breaker opens; an open breaker stops the retries (as in Dapr), and
the order is sent again a few seconds later.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fusebox.agent import Agent, BreakerOpenError

ORDER_PROCESSOR = os.environ.get("ORDER_PROCESSOR_URL", "http://127.0.0.1:8001")
HEALTH_PORT = int(os.environ.get("HEALTH_PORT", "8080"))
ORDER_INTERVAL = float(os.environ.get("ORDER_INTERVAL", "1"))
HELD_PAUSE = 5.0


def post_order(order: dict[str, Any]) -> int:
    request = urllib.request.Request(
        f"{ORDER_PROCESSOR}/orders", data=json.dumps(order).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        status: int = response.status
        return status


def serve_readiness(fb: Agent) -> ThreadingHTTPServer:
    class Readiness(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/readyz":
                self.send_error(404)
                return
            self.send_response(200 if fb.ready else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds: not worth a line each

    server = ThreadingHTTPServer(("0.0.0.0", HEALTH_PORT), Readiness)
    threading.Thread(target=server.serve_forever, name="readiness", daemon=True).start()
    return server


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fb = Agent.from_env()
    serve_readiness(fb)  # answers 503 while start() waits for the first policies
    with fb:
        orders = fb.app("order-processor", method="orders")
        order_id = 0
        while not stop.is_set():
            order_id += 1
            order = {"orderId": order_id, "checkout": fb.instance_id}
            while not stop.is_set():
                try:
                    orders.call(post_order, order)
                except BreakerOpenError as error:
                    print(f"Order held: {json.dumps(order)} ({error})", flush=True)
                    stop.wait(HELD_PAUSE)
                    continue
                except OSError as error:  # no retry policy applies (yet): try again
                    print(f"Order failed: {json.dumps(order)} ({error})", flush=True)
                    stop.wait(HELD_PAUSE)
                    continue
                print(f"Order passed: {json.dumps(order)}", flush=True)
                break
            stop.wait(ORDER_INTERVAL)


if __name__ == "__main__":
    main()
