"""The console's shared follow: joining by position, fan-out, slow pages, failures.

The follow's source is the breaker service's ``events_after``; here a script of
(position, message) pairs stands in for the store, so each case is exact.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest

from fusebox.controlplane.console.shared_feed import SharedFollow, SharedFollows
from fusebox.controlplane.server.services.breaker_service import BreakerService
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import breaker_pb2
from tests.support.eventually import eventually_async


class ScriptedEvents:
    """``events_after`` fed by the test: put (position, message or None) or an error."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, breaker_pb2.WatchBreakersResponse | None]
                                  | BaseException] = asyncio.Queue()
        self.starts: list[str] = []

    async def events_after(self, position: str, *, namespace: str = "", app_id: str = ""
                           ) -> AsyncIterator[tuple[str, breaker_pb2.WatchBreakersResponse
                                                    | None]]:
        self.starts.append(position)
        while True:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def event(self, position: str, wanted: bool = True) -> None:
        message = breaker_pb2.WatchBreakersResponse(revision=position) if wanted else None
        self.queue.put_nowait((position, message))


def serialise(message: breaker_pb2.WatchBreakersResponse) -> bytes:
    return message.revision.encode()


def follow(events: ScriptedEvents, start: str = "p0", **kwargs: Any) -> SharedFollow:
    return SharedFollow(cast(BreakerService, events), ("default", ""), start, serialise,
                        **kwargs)


async def drained(events: ScriptedEvents) -> None:
    await eventually_async(events.queue.empty, what="the follow took every event")
    await asyncio.sleep(0)  # and handled the last one


async def test_a_page_joins_after_its_position_and_gets_what_followed() -> None:
    events = ScriptedEvents()
    shared = follow(events)
    at_start = shared.join("p0")
    for position, wanted in (("p1", True), ("p2", False), ("p3", True)):
        events.event(position, wanted)
    await drained(events)
    from_p1 = shared.join("p1")
    from_p2 = shared.join("p2")  # a position outside the filter is still a place
    assert at_start is not None and from_p1 is not None and from_p2 is not None
    assert at_start.take() == [b"p1", b"p3"]
    assert from_p1.take() == [b"p3"] and from_p2.take() == [b"p3"]
    assert shared.join("elsewhere") is None  # never seen: the page keeps its own watch
    events.event("p4")
    await drained(events)
    assert [s.take() for s in (at_start, from_p1, from_p2)] == [[b"p4"]] * 3
    shared.task.cancel()


async def test_positions_older_than_the_ring_cannot_be_joined() -> None:
    events = ScriptedEvents()
    shared = follow(events, ring=3)
    for i in range(1, 6):
        events.event(f"p{i}")
    await drained(events)
    assert shared.join("p0") is None and shared.join("p2") is None
    joined = shared.join("p3")
    assert joined is not None and joined.take() == [b"p4", b"p5"]
    shared.task.cancel()


async def test_a_page_too_far_behind_is_cut_off_and_the_others_go_on() -> None:
    events = ScriptedEvents()
    shared = follow(events, subscriber_backlog=2)
    slow, quick = shared.join("p0"), shared.join("p0")
    assert slow is not None and quick is not None
    for i in range(1, 4):
        events.event(f"p{i}")
        await drained(events)
        quick.take()
    assert slow.ended is not None and slow.ended[0] is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert slow.take() == [b"p1", b"p2", b"p3"]  # what it had is still written
    assert shared.subscribers == 1 and quick.ended is None
    shared.task.cancel()


async def test_a_store_failure_ends_every_page_and_no_one_joins_the_dead_follow() -> None:
    events = ScriptedEvents()
    follows = SharedFollows(cast(BreakerService, events), serialise)
    page = follows.join(("default", ""), "p0")
    assert page is not None
    events.queue.put_nowait(StoreUnavailable("connection refused"))
    await eventually_async(lambda: page.ended is not None, what="the page told")
    assert page.ended is not None
    code, message = page.ended
    assert code is grpc.StatusCode.UNAVAILABLE and "connection refused" in message
    # A page that comes now gets a new follow from its own position.
    again = follows.join(("default", ""), "p7")
    assert again is not None
    await eventually_async(lambda: events.starts == ["p0", "p7"], what="a new follow from p7")
    follows.leave(("default", ""), page)
    follows.leave(("default", ""), again)
    assert len(follows) == 0
    await follows.close()


@pytest.mark.parametrize("position", [""])
async def test_no_position_no_sharing(position: str) -> None:
    follows = SharedFollows(cast(BreakerService, ScriptedEvents()), serialise)
    assert follows.join(("default", ""), position) is None and len(follows) == 0
