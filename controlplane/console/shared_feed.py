"""One follow of the breaker events per (namespace, app) filter, shared by every page.

A page starts on its own ``WatchBreakers`` (``feed.py``): its token checked,
its snapshot or its resume exactly the gRPC path's. Once the page is current
at a position the shared follow of its filter has passed, it leaves its own
watch and takes the shared events from there. Per transition the store is
then read and the event serialised once, however many pages watch; a page
costs a socket write per batch (BENCHMARKS.md, "The console's live feed").

A page the follow cannot place (a position it never saw, or older than its
ring) simply stays on its own watch: sharing is an optimisation, never a
change of what a page receives. A page that falls ``SUBSCRIBER_BACKLOG``
events behind is cut off with RESOURCE_EXHAUSTED, as the servicer cuts off a
slow watcher; it resumes from its last id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

import grpc

from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.services.breaker_service import BreakerService
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import breaker_pb2

log = logging.getLogger("fusebox.console")

#: Recent positions a page may join from (a page's snapshot takes a moment).
RING = 4096
#: Events held for one page whose writes are slow before it is cut off.
SUBSCRIBER_BACKLOG = 1024

Filter = tuple[str, str]  # (namespace, app_id); "" = any
Serialise = Callable[[breaker_pb2.WatchBreakersResponse], bytes]


class Subscriber:
    """One page's place on a shared follow: the events not yet written to it."""

    def __init__(self, backlog: list[bytes], limit: int) -> None:
        self._events = backlog
        self._limit = limit
        self.ready = asyncio.Event()
        #: Why the page's feed must end (gRPC code, message), once it must.
        self.ended: tuple[grpc.StatusCode, str] | None = None
        if backlog:
            self.ready.set()

    def push(self, event: bytes) -> bool:
        """Queue ``event``; False when the page is too far behind to keep."""
        self._events.append(event)
        self.ready.set()
        return len(self._events) <= self._limit

    def end(self, code: grpc.StatusCode, message: str) -> None:
        self.ended = (code, message)
        self.ready.set()

    def take(self) -> list[bytes]:
        """Every queued event, oldest first (and the page is no longer ``ready``)."""
        events, self._events = self._events, []
        self.ready.clear()
        return events


class SharedFollow:
    """The events of one filter after ``start``, fanned out to the pages that joined."""

    def __init__(self, service: BreakerService, where: Filter, start: str,
                 serialise: Serialise, *, ring: int = RING,
                 subscriber_backlog: int = SUBSCRIBER_BACKLOG) -> None:
        self._where = where
        self._serialise = serialise
        self._ring_size = ring
        self._subscriber_backlog = subscriber_backlog
        #: (sequence, position, event or None for a position outside the filter)
        #: The start is in the ring too: once it leaves, joining from it would skip events.
        self._ring: deque[tuple[int, str, bytes | None]] = deque([(0, start, None)])
        self._seq = 0
        self._positions: dict[str, int] = {start: 0}
        self._subscribers: set[Subscriber] = set()
        self._failed: tuple[grpc.StatusCode, str] | None = None
        namespace, app_id = where
        self.task = asyncio.create_task(
            self._run(service, start), name=f"console-feed shared {namespace}/{app_id}")

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def join(self, position: str) -> Subscriber | None:
        """A place from just after ``position``, or None if this follow cannot give one."""
        seq = self._positions.get(position)
        if seq is None or self._failed is not None:
            return None
        backlog = [event for s, _, event in self._ring if s > seq and event is not None]
        subscriber = Subscriber(backlog, self._subscriber_backlog)
        self._subscribers.add(subscriber)
        return subscriber

    def leave(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def _run(self, service: BreakerService, start: str) -> None:
        namespace, app_id = self._where
        try:
            async for position, message in service.events_after(
                    start, namespace=namespace, app_id=app_id):
                event = None if message is None else self._serialise(message)
                self._record(position, event)
                if event is not None:
                    self._fan_out(event)
        except StoreUnavailable as e:
            self._fail(grpc.StatusCode.UNAVAILABLE,
                       f"breaker store unavailable: {e}; resume from the last id")
        except Exception as e:  # never silent: every page is told, then reconnects
            log_event(log, logging.ERROR, "console shared feed failed", error=repr(e))
            self._fail(grpc.StatusCode.UNKNOWN, f"internal error: {e}")

    def _record(self, position: str, event: bytes | None) -> None:
        self._seq += 1
        self._ring.append((self._seq, position, event))
        self._positions[position] = self._seq
        if len(self._ring) > self._ring_size:
            old_seq, old_position, _ = self._ring.popleft()
            if self._positions.get(old_position) == old_seq:
                del self._positions[old_position]

    def _fan_out(self, event: bytes) -> None:
        for subscriber in list(self._subscribers):
            if not subscriber.push(event):
                subscriber.end(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"this page fell {self._subscriber_backlog} events behind; "
                               "resume from the last id")
                self._subscribers.discard(subscriber)

    def _fail(self, code: grpc.StatusCode, message: str) -> None:
        self._failed = (code, message)
        for subscriber in self._subscribers:
            subscriber.end(code, message)
        self._subscribers.clear()


class SharedFollows:
    """The server's shared follows: one per filter while a page uses it."""

    def __init__(self, service: BreakerService, serialise: Serialise) -> None:
        self._service = service
        self._serialise = serialise
        self._follows: dict[Filter, SharedFollow] = {}

    def __len__(self) -> int:
        return len(self._follows)

    @property
    def subscribers(self) -> int:
        """Pages on a shared follow (the others are on their own watch)."""
        return sum(follow.subscribers for follow in self._follows.values())

    def join(self, where: Filter, position: str) -> Subscriber | None:
        """A place on ``where``'s follow from just after ``position`` (started there if
        none runs), or None: the page then stays on its own watch."""
        if not position:
            return None
        follow = self._follows.get(where)
        if follow is None or follow.task.done():
            follow = self._follows[where] = SharedFollow(
                self._service, where, position, self._serialise)
        return follow.join(position)

    def leave(self, where: Filter, subscriber: Subscriber) -> None:
        """``subscriber``'s page is gone; the follow stops with its last page."""
        follow = self._follows.get(where)
        if follow is None:
            return
        follow.leave(subscriber)
        if not follow.subscribers:
            del self._follows[where]
            follow.task.cancel()

    async def close(self) -> None:
        follows, self._follows = list(self._follows.values()), {}
        for follow in follows:
            follow.task.cancel()
        if follows:
            await asyncio.wait([f.task for f in follows], timeout=2.0)
