"""The console's live feed: ``WatchBreakers`` as server-sent events.

Each page's feed runs the real ``BreakerService.WatchBreakers`` (through the
gateway, so with the caller's token checked) in a task of its own; the
servicer's ``context.write`` puts each message on a small queue and this
module writes it out as one event (docs/console.md, "The live feed"):

* ``event: breaker`` per message; snapshot messages carry no ``id:``, since
  resuming mid-snapshot would skip the breakers not sent yet;
* ``event: synced`` (with ``id:``) once the page's view is current: after a
  snapshot, or at once when a resume succeeded;
* ``event: reset`` first when the page asked to resume and the server could
  not (the servicer answered with a snapshot): the page drops what it held;
* ``event: error`` with the Connect error body when the watch fails after
  the stream started; then the stream ends;
* ``: keepalive`` every ``KEEPALIVE_SECONDS`` without an event.

Back-pressure is the servicer's own: the queue is small, a page that does not
read blocks ``write``, and the servicer ends a watch whose backlog waits too
long (RESOURCE_EXHAUSTED, sent as ``event: error``). A page that goes away
cancels its handler (the HTTP port runs with handler cancellation), which
cancels the watch task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import json_format

from fusebox.controlplane.console.connect_errors import error_body, error_response
from fusebox.controlplane.console.context import RpcAborted, console_context
from fusebox.controlplane.console.gateway import ConsoleGateway
from fusebox.controlplane.console.shared_feed import SharedFollows, Subscriber
from fusebox.controlplane.server.logs import log_event
from fusebox.v1 import breaker_pb2

log = logging.getLogger("fusebox.console")

KEEPALIVE_SECONDS = 15.0
#: Concurrent feeds per server; beyond it a page gets 429 and retries later.
MAX_FEEDS = 200
#: Messages written by the servicer and not yet sent to the page.
FEED_QUEUE = 64
#: How long a live event waits for others to share its write (see ``_batch``).
COALESCE_SECONDS = 0.05

_QUERY_FIELDS = {"namespace": "namespace", "appId": "app_id", "fromRevision": "from_revision"}
_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # nginx: pass events on as they come
}


def sse_event(event: str, data: dict[str, Any], event_id: str | None = None) -> bytes:
    """One server-sent event (``data`` is one line of JSON: no newline can split it)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def message_event(message: breaker_pb2.WatchBreakersResponse) -> bytes:
    if message.synced:
        return sse_event("synced", {"revision": message.revision}, message.revision)
    data = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return sse_event("breaker", data, None if message.snapshot else message.revision)


class EventCache:
    """Each distinct message turned into an event once, however many pages it goes to.

    Every page runs its own watch, so one transition reaches N feeds as N equal
    messages. ``MessageToDict`` costs ~125 µs a message (pure Python) against
    under 1 µs to serialize it, so the wire bytes are the key: equal messages
    share one event, a message that differs (a page that read the breaker a
    moment later) simply gets its own. Cleared when full: the entries that
    matter are the last few milliseconds' transitions.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._events: dict[bytes, bytes] = {}

    def event(self, message: breaker_pb2.WatchBreakersResponse) -> bytes:
        key = message.SerializeToString(deterministic=True)
        event = self._events.get(key)
        if event is None:
            if len(self._events) >= self._size:
                self._events.clear()
            event = self._events[key] = message_event(message)
        return event


class BreakerFeeds:
    """Every open feed of one server: bounded in number, ended with the server."""

    def __init__(self, gateway: ConsoleGateway, *, limit: int = MAX_FEEDS) -> None:
        self._gateway = gateway
        self._limit = limit
        self._handlers: set[asyncio.Task[Any]] = set()
        self._events = EventCache()
        self.shared = SharedFollows(gateway.breakers, self._events.event)

    @property
    def open_feeds(self) -> int:
        return len(self._handlers)

    async def close(self) -> None:
        """End every feed (the server is stopping); the pages reconnect elsewhere."""
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)
        await self.shared.close()

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler's body for one page's feed."""
        unknown = sorted(set(request.query) - set(_QUERY_FIELDS))
        if unknown:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"{unknown[0]}: unknown query parameter; accepted: "
                                  f"{', '.join(_QUERY_FIELDS)}")
        if len(self._handlers) >= self._limit:
            return error_response(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  f"this server already serves {self._limit} live feeds; "
                                  "retry later", headers={"Retry-After": "5"})
        watch = breaker_pb2.WatchBreakersRequest(
            mark_synced=True, **{field: request.query.get(name, "")
                                 for name, field in _QUERY_FIELDS.items()},
        )
        # The header wins: it is what the page saw last, the query what it started with.
        watch.from_revision = request.headers.get("Last-Event-ID", watch.from_revision)
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            return await self._stream(request, watch)
        finally:
            self._handlers.discard(handler)

    async def _stream(self, request: web.Request,
                      watch: breaker_pb2.WatchBreakersRequest) -> web.StreamResponse:
        queue: asyncio.Queue[breaker_pb2.WatchBreakersResponse] = asyncio.Queue(FEED_QUEUE)
        context = console_context(request, sink=queue.put)
        watcher = asyncio.create_task(self._gateway.watch(watch, context),
                                      name=f"console-feed {context.peer()}")
        try:
            first = await _next(queue, watcher, timeout=None)
            if first is None:  # the watch failed before its first message: a plain error
                return _failure_response(watcher)
            response = web.StreamResponse(headers=_HEADERS)
            await response.prepare(request)
            if watch.from_revision and first.snapshot:
                await response.write(sse_event("reset", {}))
            where = (watch.namespace, watch.app_id)
            message: breaker_pb2.WatchBreakersResponse | None = first
            while True:
                if message is not None:
                    batch, position = await self._batch(message, queue)
                    await response.write(batch)
                    if position and (shared := self.shared.join(where, position)):
                        break  # current: the rest comes from the filter's shared follow
                elif watcher.done():
                    await response.write(_failure_event(watcher))
                    return response
                else:
                    await response.write(b": keepalive\n\n")
                message = await _next(queue, watcher, timeout=KEEPALIVE_SECONDS)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        try:
            await _follow_shared(response, shared)
        finally:
            self.shared.leave(where, shared)
        return response

    async def _batch(
        self, first: breaker_pb2.WatchBreakersResponse,
        queue: asyncio.Queue[breaker_pb2.WatchBreakersResponse],
    ) -> tuple[bytes, str]:
        """``first`` and what follows within ``COALESCE_SECONDS``, as one write, and
        the position the page is current at after it ("" within a snapshot).

        A write is a syscall, and with many pages it was most of the feed's
        cost (one per event per page); a 50 ms window turns a trickle of
        transitions into a few writes a second at a latency no one sees. A
        backlog (a snapshot) is drained at once, with no wait.
        """
        if queue.empty():
            await asyncio.sleep(COALESCE_SECONDS)
        messages = [first]
        while not queue.empty() and len(messages) < FEED_QUEUE:
            messages.append(queue.get_nowait())
        last = messages[-1]
        current = "" if last.snapshot and not last.synced else last.revision
        return b"".join(self._events.event(m) for m in messages), current


async def _follow_shared(response: web.StreamResponse, shared: Subscriber) -> None:
    """Write the shared follow's events to one page until it must end."""
    while True:
        try:
            await asyncio.wait_for(shared.ready.wait(), KEEPALIVE_SECONDS)
        except TimeoutError:
            await response.write(b": keepalive\n\n")
            continue
        if shared.ended is None:
            await asyncio.sleep(COALESCE_SECONDS)  # let a trickle share one write
        events = shared.take()
        if events:
            await response.write(b"".join(events))
        if shared.ended is not None:
            code, message = shared.ended
            await response.write(sse_event("error", error_body(code, message, ())))
            return


async def _next(queue: asyncio.Queue[breaker_pb2.WatchBreakersResponse],
                watcher: asyncio.Task[None],
                timeout: float | None) -> breaker_pb2.WatchBreakersResponse | None:
    """The next message; None when the watch ended (and nothing is queued) or on timeout."""
    if not queue.empty():
        return queue.get_nowait()
    if watcher.done():
        return None
    getting = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait({getting, watcher}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getting.done():
            getting.cancel()
    return getting.result() if getting.done() and not getting.cancelled() else None


def _failure(watcher: asyncio.Task[None]) -> tuple[grpc.StatusCode, str, tuple[Any, ...]]:
    error = watcher.exception()
    if isinstance(error, RpcAborted):
        return error.code, error.details, error.status_details
    if error is None:
        return grpc.StatusCode.UNAVAILABLE, "the watch ended; resume from the last id", ()
    log_event(log, logging.ERROR, "console feed failed", error=repr(error))
    return grpc.StatusCode.UNKNOWN, f"internal error: {error}", ()


def _failure_response(watcher: asyncio.Task[None]) -> web.Response:
    code, message, details = _failure(watcher)
    return error_response(code, message, details)


def _failure_event(watcher: asyncio.Task[None]) -> bytes:
    code, message, details = _failure(watcher)
    return sse_event("error", error_body(code, message, details))
