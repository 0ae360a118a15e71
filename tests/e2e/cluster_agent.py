"""A service instance for end-to-end tests: an Agent calling an upstream in a loop.

Prints one JSON object per line on stdout, e.g.
    {"event": "ready"}
    {"event": "state", "breaker": "upstream:work", "from": "closed", "to": "open",
     "origin": "local" | "fleet" | "operator", "t": ...}
    {"event": "call", "result": "ok" | "fail" | "open", "t": ...}   (with --log-calls)
    {"event": "mode", "mode": "cluster" | "local", "reason": ..., "t": ...}
        (whether its breakers follow the fleet, from the agent's breaker_mode log records)
Stops on SIGTERM or when stdin closes, and after --max-seconds at the latest.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request

from fusebox.agent import Agent, BreakerOpenError
from fusebox.agent.events import StateChangeEvent


def emit(**fields: object) -> None:
    fields.setdefault("t", time.time())
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class ModeEvents(logging.Handler):
    """The agent's ``breaker_mode`` log records (following the fleet or not) as events."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "fusebox_event", None) == "breaker_mode":
            emit(event="mode", mode=getattr(record, "mode", ""),
                 reason=getattr(record, "reason", ""))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--app-id", default="checkout")
    parser.add_argument("--upstream", required=True, help="base URL of the upstream")
    parser.add_argument("--target", default="upstream")
    parser.add_argument("--method", default="work")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--log-calls", action="store_true")
    parser.add_argument("--cache-path", required=True)
    parser.add_argument("--instance-id", default=None)
    parser.add_argument("--token", default=None, help="bearer token (a server with a tokens file)")
    # Generous by default: on a loaded test machine a lease answer can take longer
    # than the library's 100 ms, and the local fallback would then probe too.
    parser.add_argument("--probe-lease-timeout", type=float, default=2.0)
    args = parser.parse_args()

    cluster_log = logging.getLogger("fusebox.agent.cluster")
    cluster_log.addHandler(ModeEvents(logging.DEBUG))
    cluster_log.setLevel(logging.INFO)  # "follows the fleet" is logged at INFO
    # A handler on the chain retires logging's last resort: keep its warnings on stderr.
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.WARNING)
    cluster_log.addHandler(to_stderr)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    def get() -> bytes:
        with urllib.request.urlopen(f"{args.upstream}/{args.method}", timeout=2) as response:
            return bytes(response.read())

    with Agent(app_id=args.app_id, server=args.server, cache_path=args.cache_path,
               instance_id=args.instance_id, token=args.token,
               probe_lease_timeout=args.probe_lease_timeout) as fb:
        def on_state_change(e: StateChangeEvent) -> None:
            emit(event="state", breaker=e.breaker, to=str(e.to_state), origin=e.origin.value,
                 **{"from": str(e.from_state)})

        fb.on_state_change(on_state_change)
        target = fb.app(args.target, method=args.method)
        deadline = time.monotonic() + args.max_seconds
        while fb.policies is None or not fb.policies.targets:
            if stop.wait(0.02) or time.monotonic() > deadline:
                return 1
        emit(event="ready")
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                target.call(get)
                result = "ok"
            except BreakerOpenError:
                result = "open"
            except (urllib.error.URLError, OSError):
                result = "fail"
            if args.log_calls:
                emit(event="call", result=result)
            stop.wait(args.interval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
