"""Test app: the quickstart's order-processor, stdlib HTTP only (no Fusebox import).

Every order received is printed and appended to $ORDERS_FILE.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Orders(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        order = json.loads(body)["orderId"]
        with open(os.environ["ORDERS_FILE"], "a") as f:
            f.write(f"{order}\n")
        print(f"Order received : {order}", flush=True)
        reply = json.dumps({"received": order, "caller": self.headers.get("dapr-caller-app-id"),
                            "query": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Order-Processor", "yes")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        return


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Orders)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("order-processor listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
