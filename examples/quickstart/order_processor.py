"""order-processor: the quickstart's upstream, a stdlib HTTP server.

``POST /orders`` with ``{"orderId": n}`` prints ``Order received: {"orderId": n}``
and answers 200, as the Dapr quickstart's Python order-processor does.

    python examples/quickstart/order_processor.py --port 8001
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_output_lock = threading.Lock()


def say(line: str) -> None:
    """One whole line per write: handler threads must not interleave their output."""
    with _output_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class OrderHandler(BaseHTTPRequestHandler):
    """Accepts orders on ``POST /orders``; anything else is 404."""

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/orders":
            self.send_error(404)
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            order = json.loads(self.rfile.read(length) or b"null")
        except json.JSONDecodeError:
            self.send_error(400, "body is not JSON")
            return
        # Printed before answering: an order the caller saw pass was always received.
        say(f"Order received: {json.dumps(order)}")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass  # one line per order is the output; no access log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()

    server = ThreadingHTTPServer((args.host, args.port), OrderHandler)
    server.daemon_threads = True
    # SIGTERM (the orchestrator's "Ctrl+C") stops serving; shutdown() must not
    # run on the serving thread, hence the helper thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"order-processor listening on http://{args.host}:{args.port}/orders", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
