"""checkout: posts ``{"orderId": n}`` orders to order-processor through the Fusebox agent.

The Dapr quickstart's checkout, with the agent in place of the sidecar: every
order goes through ``fb.app("order-processor", method="orders").call(...)``, so
the control plane's policies for app-id ``checkout`` apply (retryForever and
simpleCB in ``resiliency.yaml``) and the breaker ``order-processor:orders`` is
shared by every replica (unless ``--per-instance``).

An order is never dropped. retryForever retries a failing order until the
breaker opens; an open breaker stops retries at once (as in Dapr), so the app
itself holds the order, waits ``--open-pause`` and sends the same order again.

Human output on stdout (``Order passed: {"orderId": 1}`` and the agent's log
lines); with ``--events PATH`` one JSON object per line for the orchestrator.

    python examples/quickstart/checkout.py --server 127.0.0.1:50151 \\
        --order-processor http://127.0.0.1:8001
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

from fusebox.agent import Agent, BreakerOpenError
from fusebox.agent.events import StateChangeEvent

BREAKER = "order-processor:orders"


class DaprStyleFormatter(logging.Formatter):
    """``INFO[0005] message``: level and seconds since start, as daprd prints them."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.relativeCreated / 1000)
        return f"{record.levelname}[{seconds:04d}] {record.getMessage()}"


class EventLog:
    """JSON lines for the orchestrator's summary (no file: nothing is written)."""

    def __init__(self, path: str | None) -> None:
        # Open for the process's lifetime, closed by close(): not a with-block.
        self._file: IO[str] | None = Path(path).open("a") if path else None  # noqa: SIM115
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        if self._file is None:
            return
        line = json.dumps({"event": event, "t": time.time(), **fields})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="checkout: sends orders through the agent")
    parser.add_argument("--server", required=True, help="control plane address HOST:PORT")
    parser.add_argument("--order-processor", default="http://127.0.0.1:8001",
                        help="base URL of order-processor")
    parser.add_argument("--replica", type=int, default=1, help="this replica's number, from 1")
    parser.add_argument("--replicas", type=int, default=1,
                        help="how many replicas run (order ids interleave, never collide)")
    parser.add_argument("--order-interval", type=float, default=1.0,
                        help="seconds between two orders (the quickstart sends one a second)")
    parser.add_argument("--open-pause", type=float, default=1.0,
                        help="seconds to hold an order when the breaker rejects it")
    parser.add_argument("--drain-seconds", type=float, default=60.0,
                        help="on stop, how long to keep trying the order in hand")
    parser.add_argument("--per-instance", action="store_true",
                        help="breakers local to this replica instead of cluster-wide")
    parser.add_argument("--cache-path", default=None, help="the agent's policy cache file")
    parser.add_argument("--events", default=None, help="write JSON-lines events here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(DaprStyleFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # The agent's grpc/link chatter is not part of the story.
    logging.getLogger("fusebox.agent.link").setLevel(logging.WARNING)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    events = EventLog(args.events)
    url = args.order_processor.rstrip("/") + "/orders"

    with Agent(app_id="checkout", server=args.server, cache_path=args.cache_path,
               cluster_breakers=not args.per_instance) as fb:
        fb.on_state_change(lambda e: record_state(events, e))

        def post(order: dict[str, int]) -> None:
            """One attempt; recorded with the breaker state that admitted it."""
            state = fb.breaker_states().get(BREAKER)
            started = time.time()
            ok = False
            try:
                request = urllib.request.Request(
                    url, data=json.dumps(order).encode(),
                    headers={"Content-Type": "application/json"}, method="POST",
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    response.read()
                ok = True
            finally:
                events.emit("attempt", order=order["orderId"], start=started, end=time.time(),
                            state=str(state) if state else "closed", ok=ok)

        while fb.policies is None or not fb.policies.targets:
            if stop.wait(0.05):  # poll for the first policy snapshot
                return 1
        events.emit("ready")
        target = fb.app("order-processor", method="orders")
        sequence = 0
        while not stop.is_set():
            order = {"orderId": args.replica + sequence * args.replicas}
            sequence += 1
            events.emit("sent", order=order["orderId"])
            send_until_passed(target, post, order, args, stop, events)
            stop.wait(args.order_interval)
    events.close()
    return 0


def send_until_passed(target: Any, post: Any, order: dict[str, int], args: argparse.Namespace,
                      stop: threading.Event, events: EventLog) -> None:
    """Send ``order`` until it passes: the agent retries, the app holds it while open."""
    drain_deadline: float | None = None
    while True:
        try:
            target.call(post, order)
        except BreakerOpenError as exc:
            print(f"Order held: {json.dumps(order)} (circuit breaker {BREAKER!r} is {exc.state};"
                  f" sending it again in {args.open_pause:g}s)", flush=True)
        except OSError as exc:  # a final failure: only without a retry policy
            print(f"Order failed: {json.dumps(order)} ({exc}); sending it again", flush=True)
        else:
            print(f"Order passed: {json.dumps(order)}", flush=True)
            events.emit("passed", order=order["orderId"])
            return
        if stop.is_set():
            drain_deadline = drain_deadline or time.monotonic() + args.drain_seconds
            if time.monotonic() > drain_deadline:
                print(f"Order abandoned at shutdown: {json.dumps(order)}", flush=True)
                return
        time.sleep(args.open_pause)  # the hold itself: nothing to wait for but time


def record_state(events: EventLog, event: StateChangeEvent) -> None:
    events.emit("state", breaker=event.breaker, to=str(event.to_state),
                generation=event.generation, cause=str(event.cause),
                **{"from": str(event.from_state)})


if __name__ == "__main__":
    sys.exit(main())
