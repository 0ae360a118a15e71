"""Test app: the quickstart's checkout loop, stdlib HTTP only (no Fusebox import).

Posts orders "<CHECKOUT_NAME>-1", "-2", ... to localhost:$DAPR_HTTP_PORT/orders
with `dapr-app-id: order-processor`, and does not move on to the next order
until the current one is accepted: that is how no order gets lost.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request


def post(order: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://localhost:{os.environ['DAPR_HTTP_PORT']}/orders",
        data=json.dumps({"orderId": order}).encode(), method="POST",
        headers={"dapr-app-id": "order-processor", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    name = os.environ["CHECKOUT_NAME"]
    number = 1
    while True:
        order = f"{name}-{number}"
        status, body = post(order)
        if status == 200:
            print(f"Order passed: {order}", flush=True)
            number += 1
        else:
            print(f"Order failed: {order} status {status} {body}", flush=True)
        time.sleep(0.05)  # the app's pace, as in the quickstart (1 s there)


if __name__ == "__main__":
    main()
