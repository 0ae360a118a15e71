"""``fusebox breakers watch``: follow ``WatchBreakers``, survive stream breaks.

``BreakerWatcher`` owns the reconnect loop: when the stream breaks it opens a
new one with ``from_revision`` set to the last revision it saw, so nothing is
missed or repeated; a server that cannot resume answers with a snapshot
instead. Attempts are bounded (the count starts again after every event), and
the last failure decides the exit code (3 when the server stays unreachable).

What happens to each event is up to the sink: ``JsonLinesSink`` (piped output
or ``-o json``) writes one flushed JSON object per line, ``LiveTableSink`` (a
terminal) redraws a table of every breaker with ANSI escapes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TextIO

import grpc

from fusebox.controlplane.cli._breaker_view import breakers_table, event_to_json, key_path
from fusebox.controlplane.cli._errors import CommandFailed
from fusebox.v1 import breaker_pb2

DEFAULT_MAX_ATTEMPTS = 6
FIRST_RETRY_DELAY_SECONDS = 0.25
MAX_RETRY_DELAY_SECONDS = 4.0

# Failures worth another attempt: the server went away, restarted, or shed the
# stream. Anything else (bad request, unknown namespace) will not change.
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class WatchSink(Protocol):
    """Receives the events of a watch, in order."""

    def connected(self) -> None:
        """A new stream is open (the first, or one after a break)."""

    def event(self, event: breaker_pb2.WatchBreakersResponse) -> None: ...


class BreakerStream(Protocol):
    """What the watcher needs from the client (``BreakerServiceClient``)."""

    address: str

    def watch(
        self, request: breaker_pb2.WatchBreakersRequest
    ) -> Iterator[breaker_pb2.WatchBreakersResponse]: ...

    def failure(self, err: grpc.RpcError) -> CommandFailed: ...


class BreakerWatcher:
    """Follows one ``WatchBreakers`` query across reconnects until interrupted.

    ``sleep`` is injectable so tests can drive the retry loop without waiting.
    """

    def __init__(
        self,
        client: BreakerStream,
        request: breaker_pb2.WatchBreakersRequest,
        sink: WatchSink,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
        note: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._client = client
        self._request = request
        self._sink = sink
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._note = note
        self.last_revision = request.from_revision

    def run(self) -> None:
        """Returns never on its own; raises ``CommandFailed`` when retries are exhausted."""
        failures = 0
        while True:
            request = breaker_pb2.WatchBreakersRequest()
            request.CopyFrom(self._request)
            request.from_revision = self.last_revision
            received = False
            try:
                self._sink.connected()
                for event in self._client.watch(request):
                    received = True
                    failures = 0
                    if not event.HasField("breaker"):
                        continue  # a marker this client did not ask for (``synced``)
                    # Snapshot events carry the position the snapshot was taken
                    # at; resuming there after a break mid-snapshot would skip the
                    # breakers not sent yet, so only live events move the resume point.
                    if event.revision and not event.snapshot:
                        self.last_revision = event.revision
                    self._sink.event(event)
                # The server ended the stream (draining, restarting): resume elsewhere.
                failure: CommandFailed | None = None
                why = "the server closed the stream"
            except grpc.RpcError as err:
                code: grpc.StatusCode = err.code()
                failure = self._client.failure(err)
                if code not in _RETRYABLE:
                    raise failure from None
                why = f"stream broken ({code.name.lower()})"
            if not received:
                failures += 1
            if failures >= self._max_attempts:
                raise failure or CommandFailed(
                    f"the server at {self._client.address} keeps closing the watch stream"
                )
            delay = min(
                MAX_RETRY_DELAY_SECONDS, FIRST_RETRY_DELAY_SECONDS * 2 ** max(0, failures - 1)
            )
            resume = (
                f"from revision {self.last_revision}" if self.last_revision else "with a snapshot"
            )
            self._note(f"{why}; reconnecting {resume} in {delay:g}s")
            self._sleep(delay)


class JsonLinesSink:
    """One JSON object per event and line, flushed at once (for pipes and ``jq``)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def connected(self) -> None:
        pass

    def event(self, event: breaker_pb2.WatchBreakersResponse) -> None:
        self._out.write(json.dumps(event_to_json(event), sort_keys=True, ensure_ascii=False))
        self._out.write("\n")
        self._out.flush()


class BreakerBoard:
    """Every breaker's latest state, as a watch stream reveals it.

    A snapshot replaces what was known: breakers missing from it are dropped
    when the first live event after it arrives (the stream does not mark the
    end of a snapshot otherwise).
    """

    def __init__(self) -> None:
        self.breakers: dict[str, breaker_pb2.Breaker] = {}
        self.revision = ""
        self._in_snapshot = False
        self._snapshot_keys: set[str] = set()

    def connected(self) -> None:
        self._in_snapshot = False

    def apply(self, event: breaker_pb2.WatchBreakersResponse) -> None:
        key = key_path(event.breaker.key)
        if event.snapshot:
            if not self._in_snapshot:
                self._in_snapshot = True
                self._snapshot_keys = set()
            self._snapshot_keys.add(key)
        elif self._in_snapshot:
            self._in_snapshot = False
            self.breakers = {k: v for k, v in self.breakers.items() if k in self._snapshot_keys}
        self.breakers[key] = event.breaker
        if event.revision:
            self.revision = event.revision

    def table(self, now: float) -> str:
        return breakers_table(list(self.breakers.values()), now)


# Home, then clear to the end of the screen after drawing: no flicker from a
# full clear before every frame.
_HOME = "\x1b[H"
_CLEAR_LINE_END = "\x1b[K"
_CLEAR_SCREEN_END = "\x1b[J"


class LiveTableSink:
    """Redraws the whole table in place after every event (a terminal, no curses)."""

    def __init__(self, out: TextIO, title: str, clock: Callable[[], float] = time.time) -> None:
        self._out = out
        self._title = title
        self._clock = clock
        self.board = BreakerBoard()

    def connected(self) -> None:
        self.board.connected()
        self.redraw()

    def event(self, event: breaker_pb2.WatchBreakersResponse) -> None:
        self.board.apply(event)
        self.redraw()

    def frame(self) -> str:
        """What one redraw shows: the title line, then the table (or a waiting note)."""
        revision = f"revision {self.board.revision}" if self.board.revision else "no events yet"
        header = f"{self._title} — {revision} (Ctrl-C to exit)"
        body = self.board.table(self._clock()) if self.board.breakers else "no circuit breakers yet"
        return f"{header}\n\n{body}"

    def redraw(self) -> None:
        lines = self.frame().split("\n")
        self._out.write(_HOME + "".join(f"{line}{_CLEAR_LINE_END}\n" for line in lines))
        self._out.write(_CLEAR_SCREEN_END)
        self._out.flush()
