"""The README's "Try it": an agent of app "checkout" calls order-processor, which is down.

With examples/try-it/resiliency-v2.yaml applied (retries every 200 ms), five
failed attempts open the breaker "order-processor:orders", for this instance
at once and for the fleet as soon as the control plane has the report; the
`fusebox breakers` commands then show it. The server is $FUSEBOX_SERVER, else
127.0.0.1:50051 (what `make run` serves), as for the CLI.
"""

import logging
import os

from fusebox.agent import Agent, BreakerOpenError

logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")


def post_order(order: dict) -> dict:
    raise ConnectionRefusedError("order-processor is down")  # every attempt fails


with Agent(app_id="checkout", server=os.environ.get("FUSEBOX_SERVER", "127.0.0.1:50051")) as fb:
    try:
        fb.app("order-processor", method="orders").call(post_order, {"orderId": 1})
    except BreakerOpenError as error:
        print(f"order held: {error}")
    print(fb.breaker_states())
