"""An HTTP upstream on 127.0.0.1 that counts what reaches it, for the fleet budget tests.

Each request names its caller in the first path segment (``GET /<instance>``)
and its attempt number in the ``X-Attempt`` header (1: a first attempt, 2+: a
retry), so the upstream tells first attempts from retries fleet-wide without
trusting the callers' own counts. ``fail_ratio`` makes it answer 503 to that
share of requests (a brownout), drawn from a seeded generator.

It is one asyncio server in its own thread (HTTP/1.1 keep-alive), cheap enough
to take a few thousand requests per second beside the processes under test
on two cores.

>>> with BudgetUpstream() as upstream:          # doctest: +SKIP
...     upstream.fail_ratio = 0.6
...     ...
...     upstream.count(since=t0, until=t0 + 10, first=True)
"""

from __future__ import annotations

import asyncio
import bisect
import random
import threading
import time
from dataclasses import dataclass

__all__ = ["Arrival", "BudgetUpstream"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
_START_DEADLINE = 10.0


@dataclass(frozen=True, slots=True)
class Arrival:
    """One request as the upstream saw it."""

    t: float  # time.time() at arrival
    caller: str
    attempt: int  # 1 = first attempt; 0 when the caller sent no X-Attempt
    failed: bool  # answered 503


class BudgetUpstream:
    """Counts every request by time, caller and kind; answers 503 to ``fail_ratio`` of them."""

    def __init__(self, *, fail_ratio: float = 0.0, seed: int = 17) -> None:
        self.fail_ratio = fail_ratio
        self._random = random.Random(seed)
        self._arrivals: list[Arrival] = []  # in arrival order, so sorted by t
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="budget-upstream", daemon=True)
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- counting -------------------------------------------------------------------

    def arrivals(self, since: float = 0.0, until: float = float("inf")) -> list[Arrival]:
        """The requests that arrived at times in ``[since, until)``."""
        with self._lock:
            times = [a.t for a in self._arrivals]
            return self._arrivals[bisect.bisect_left(times, since):
                                  bisect.bisect_left(times, until)]

    def count(self, since: float = 0.0, until: float = float("inf"), *,
              first: bool | None = None) -> int:
        """Requests in ``[since, until)``: all, first attempts only, or retries only."""
        return sum(1 for a in self.arrivals(since, until)
                   if first is None or (a.attempt <= 1) == first)

    # -- serving --------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1] if lines[0].count(" ") >= 2 else "/"
                attempt = 0
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "x-attempt":
                        attempt = int(value.strip() or 0)
                    elif name == "content-length":
                        length = int(value.strip() or 0)
                if length:
                    await reader.readexactly(length)
                failed = self.fail_ratio > 0 and self._random.random() < self.fail_ratio
                with self._lock:
                    self._arrivals.append(Arrival(time.time(), path.strip("/").split("/")[0],
                                                  attempt, failed))
                writer.write(_UNAVAILABLE if failed else _OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass  # the caller closed its connection (or sent something we do not parse)
        finally:
            writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
            self.port = self._server.sockets[0].getsockname()[1]
            self._started.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()
        if self._server is not None:
            self._server.close()
        pending = asyncio.all_tasks(self._loop)  # connections callers left open
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> BudgetUpstream:
        self._thread.start()
        if not self._started.wait(_START_DEADLINE):
            raise RuntimeError("the budget upstream did not start listening in time")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
