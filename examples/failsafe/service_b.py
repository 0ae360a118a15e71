"""serviceB of the failsafe-go walk-through: slow, sometimes 503 with ``Retry-After``.

``GET /`` answers ``{"message": "hello from service B"}``, unless the seeded
coin says otherwise:

* ``--fail-rate P``: answer 503 with ``Retry-After: 1`` (the post's ``fail()``);
  ``--retry-after 2,1`` sends 2, then 1, then 2, ... instead (one value per 503, in turn);
* ``--sleep-rate P --sleep S``: wait S seconds first (the post's ``sleep()``);
* ``--delay S``: always wait S seconds first (the timeout step).

``--seed`` makes the sequence of answers reproducible (requests are served one
decision at a time, in arrival order). One chi-style log line per request; a
503's line ends with the ``Retry-After`` it sent.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BODY = b'{"message": "hello from service B"}'
_output_lock = threading.Lock()


def say(line: str) -> None:
    with _output_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def make_handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    coin = random.Random(args.seed)
    retry_afters = itertools.cycle(args.retry_after)
    coin_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            started = time.monotonic()
            with coin_lock:  # one decision per request, in order: reproducible
                fail = coin.random() < args.fail_rate
                slow = coin.random() < args.sleep_rate
                retry_after = next(retry_afters) if fail else 0
            if fail:
                self.send_response(503)
                self.send_header("Retry-After", str(retry_after))
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                pause = args.delay + (args.sleep if slow else 0.0)
                if pause:
                    time.sleep(pause)  # the simulated slowness itself
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                # The caller may have timed out and left.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(BODY)
            took = (time.monotonic() - started) * 1000
            sent = f" (Retry-After: {retry_after})" if fail else ""
            say(f'"GET {self.path} HTTP/1.1" from {self.client_address[0]} - '
                f"{503 if fail else 200} in {took:.1f}ms{sent}")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def _seconds_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        message = f"expected whole seconds like 1 or 2,1, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError(f"seconds cannot be negative: {text!r}")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description="serviceB: slow and unreliable on purpose")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--retry-after", type=_seconds_list, default=[1], metavar="S[,S...]",
                        help="Retry-After seconds of each 503, in turn (default 1, as the post)")
    parser.add_argument("--sleep-rate", type=float, default=0.0)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    say(f"serviceB listening on http://127.0.0.1:{args.port}")
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
