"""The console's live feed: WatchBreakers as server-sent events, resumable, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fusebox.controlplane.console import feed
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import breaker_pb2
from tests.controlplane.console.conftest import (
    API,
    KEY,
    Console,
    bearer,
    console_server,
    grpc_metadata,
)
from tests.support.eventually import eventually_async

WATCH = API + "fusebox.v1.BreakerService/WatchBreakers"
READ_DEADLINE = 10.0
MAX_LINES = 1000  # one event is a few lines: a reader that finds no blank line gives up


@dataclass
class Event:
    event: str  # "breaker", "synced", "reset", "error" or "comment"
    data: dict[str, Any]
    id: str | None = None
    comment: str = ""


class Feed:
    """Reads one feed's events, each within a deadline."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> Event:
        return await asyncio.wait_for(self._read(), READ_DEADLINE)

    async def _read(self) -> Event:
        fields: dict[str, str] = {}
        comment = ""
        for _ in range(MAX_LINES):
            raw = await self.response.content.readline()
            if not raw:
                raise EOFError("the feed ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if fields or comment:
                    break
                continue
            name, _, value = line.partition(":")
            if not name:
                comment = value.strip()
                continue
            fields[name] = value.removeprefix(" ")
        else:
            raise AssertionError("no end of event in the feed")
        if not fields:
            return Event("comment", {}, comment=comment)
        return Event(fields["event"], json.loads(fields["data"]), fields.get("id"))

    async def until(self, kind: str, limit: int = 50) -> tuple[Event, list[Event]]:
        """The next event of ``kind`` and those before it (at most ``limit`` events)."""
        before = []
        for _ in range(limit):
            event = await self.next()
            if event.event == kind:
                return event, before
            before.append(event)
        raise AssertionError(f"no {kind} event within {limit}: {before}")


@contextlib.asynccontextmanager
async def open_feed(console: Console, role: str | None = "viewer", query: str = "",
                    **headers: str) -> AsyncIterator[Feed]:
    async with console.http.get(console.base + WATCH + query,
                                headers={**bearer(role), **headers}) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/event-stream"
        yield Feed(response)


async def set_override(console: Console, override: int, reason: str = "test") -> None:
    await console.breakers().SetOverride(
        breaker_pb2.SetOverrideRequest(key=KEY, override=override, reason=reason),
        metadata=grpc_metadata("operator"))


FORCE_OPEN = breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN
CLEAR = breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with console_server(tmp_path) as running:
        await set_override(running, FORCE_OPEN)  # the breaker exists, open
        yield running


async def test_a_new_feed_gets_the_snapshot_then_synced(console: Console) -> None:
    async with open_feed(console) as events:
        synced, snapshot = await events.until("synced")
    assert [e.event for e in snapshot] == ["breaker"]
    breaker = snapshot[0].data
    assert breaker["snapshot"] is True and snapshot[0].id is None  # no resuming mid-snapshot
    assert breaker["breaker"]["displayName"] == "order-processor:orders"
    assert breaker["breaker"]["state"] == "BREAKER_STATE_OPEN"
    assert synced.id and synced.data == {"revision": synced.id}


async def test_an_empty_namespace_still_gets_synced(console: Console) -> None:
    async with open_feed(console, query="?namespace=nobody-here") as events:
        synced, before = await events.until("synced")
    assert before == [] and synced.id


async def test_a_transition_arrives_live(console: Console) -> None:
    async with open_feed(console) as events:
        await events.until("synced")
        await set_override(console, CLEAR, "deploy done")
        live = await events.next()
    assert live.event == "breaker" and live.id == live.data["revision"]
    assert live.data["snapshot"] is False
    transition = live.data["transition"]
    assert transition["fromState"] == "BREAKER_STATE_OPEN"
    assert transition["toState"] == "BREAKER_STATE_CLOSED"
    assert transition["cause"] == "TRANSITION_CAUSE_OVERRIDE"


async def test_a_resumed_feed_gets_only_what_followed(console: Console) -> None:
    async with open_feed(console) as events:
        await events.until("synced")
        await set_override(console, CLEAR, "first")
        seen = await events.next()
    assert seen.id
    await set_override(console, FORCE_OPEN, "second")
    await set_override(console, CLEAR, "third")
    async with open_feed(console, **{"Last-Event-ID": seen.id}) as events:
        synced, before = await events.until("synced")
        missed = [await events.next(), await events.next()]
    assert before == []  # no reset, no snapshot
    assert synced.id == seen.id
    assert [e.data["transition"]["detail"] for e in missed] == [
        "second (by operator-person)", "third (by operator-person)"]


async def test_the_query_may_give_the_revision_instead_of_the_header(console: Console) -> None:
    async with open_feed(console) as events:
        synced, _ = await events.until("synced")
    await set_override(console, CLEAR, "after")
    async with open_feed(console, query=f"?fromRevision={synced.id}") as events:
        _, before = await events.until("synced")
        missed = await events.next()
    assert before == [] and missed.data["transition"]["detail"].startswith("after")


@pytest.mark.parametrize("revision", ["7@0123abcd", "3", "not-a-position", "999999@x"])
async def test_a_revision_the_server_cannot_resume_gets_reset_and_a_snapshot(
    console: Console, revision: str,
) -> None:
    async with open_feed(console, **{"Last-Event-ID": revision}) as events:
        first = await events.next()
        synced, snapshot = await events.until("synced")
    assert first.event == "reset"
    assert [e.data["breaker"]["displayName"] for e in snapshot] == ["order-processor:orders"]
    assert all(e.data["snapshot"] for e in snapshot)
    assert synced.id


async def test_a_revision_of_a_restarted_server_gets_reset(tmp_path: Path) -> None:
    """The embedded store starts its stream again on a restart: an id from before
    must not resume (its number may well exist again)."""
    async with console_server(tmp_path / "before") as before:
        await set_override(before, FORCE_OPEN)
        async with open_feed(before) as events:
            old, _ = await events.until("synced")
    async with console_server(tmp_path / "after") as after:
        await set_override(after, FORCE_OPEN)
        await set_override(after, CLEAR)  # the new stream is past the old id's number
        async with open_feed(after, **{"Last-Event-ID": old.id or ""}) as events:
            assert (await events.next()).event == "reset"


async def test_a_closed_page_leaves_no_feed_behind(console: Console) -> None:
    feeds = console.server.console.feeds if console.server.console else None
    assert feeds is not None
    async with open_feed(console) as events:
        await events.until("synced")
        assert feeds.open_feeds == 1

    def watching() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks()
                if t.get_name().startswith("console-feed") and not t.done()]

    await eventually_async(lambda: feeds.open_feeds == 0 and not watching(),
                           what="the feed and its watch task gone",
                           details=lambda: f"{feeds.open_feeds} open, tasks {watching()}")


async def test_feeds_beyond_the_limit_are_told_to_come_back(
    console: Console, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert console.server.console is not None
    monkeypatch.setattr(console.server.console.feeds, "_limit", 1)
    async with open_feed(console) as events:
        await events.until("synced")
        async with console.http.get(console.base + WATCH, headers=bearer("viewer")) as refused:
            assert refused.status == 429
            assert (await refused.json())["code"] == "resource_exhausted"


async def test_a_feed_needs_a_token(console: Console) -> None:
    async with console.http.get(console.base + WATCH) as reply:
        assert reply.status == 401
        assert (await reply.json())["code"] == "unauthenticated"


async def test_an_unknown_query_parameter_is_named(console: Console) -> None:
    async with console.http.get(console.base + WATCH + "?app=checkout",
                                headers=bearer("viewer")) as reply:
        assert reply.status == 400
        assert (await reply.json())["message"].startswith("app: unknown query parameter")


async def test_an_idle_feed_sends_keepalives(
    console: Console, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed, "KEEPALIVE_SECONDS", 0.05)
    async with open_feed(console) as events:
        await events.until("synced")
        keepalive = await events.next()
    assert (keepalive.event, keepalive.comment) == ("comment", "keepalive")


async def test_a_failure_after_the_start_is_an_error_event(console: Console) -> None:
    async with open_feed(console) as events:
        await events.until("synced")

        async def unavailable(*args: object, **kwargs: object) -> Any:
            raise StoreUnavailable("connection refused")

        console.server.breaker_store.read_events = unavailable  # type: ignore[method-assign]
        error, _ = await events.until("error")
        with pytest.raises(EOFError):
            await events.next()
    assert error.data["code"] == "unavailable"
    assert "connection refused" in error.data["message"]


async def test_stopping_the_server_ends_its_feeds(tmp_path: Path) -> None:
    async with console_server(tmp_path) as running, open_feed(running) as events:
        await events.until("synced")
        assert running.server.console is not None
        await running.server.console.close()
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            await events.next()


def test_equal_messages_share_one_event_and_different_ones_do_not() -> None:
    cache = feed.EventCache(size=2)
    one = breaker_pb2.WatchBreakersResponse(revision="7@e", breaker=breaker_pb2.Breaker(
        display_name="<checkout>:pay", generation=3))
    same = breaker_pb2.WatchBreakersResponse()
    same.CopyFrom(one)
    later = breaker_pb2.WatchBreakersResponse()
    later.CopyFrom(one)
    later.breaker.generation = 4

    first = cache.event(one)
    assert cache.event(same) is first
    assert first == feed.message_event(one)
    assert cache.event(later) == feed.message_event(later) != first
    # Full: cleared, and the events are still right.
    third = breaker_pb2.WatchBreakersResponse(revision="8@e", synced=True)
    assert cache.event(third) == feed.message_event(third)
    assert cache.event(one) == first


@pytest.fixture(params=["embedded", "redis"])
async def any_store_console(request: pytest.FixtureRequest,
                            tmp_path: Path) -> AsyncIterator[Console]:
    """The console on the embedded store and on a real redis-server (16 partitions)."""
    url = "memory://" if request.param == "embedded" else request.getfixturevalue("redis_url")
    async with console_server(tmp_path, store_url=url) as running:
        await set_override(running, FORCE_OPEN)
        yield running


async def test_pages_of_one_filter_share_one_follow_and_each_gets_every_event_once(
    any_store_console: Console,
) -> None:
    console = any_store_console
    assert console.server.console is not None
    shared = console.server.console.feeds.shared
    async with open_feed(console) as first, open_feed(console) as second:
        await first.until("synced")
        await second.until("synced")
        # Both pages joined the filter's one follow once they were current.
        await eventually_async(lambda: len(shared) == 1, what="one shared follow")
        await eventually_async(lambda: shared.subscribers == 2, what="both pages on it")
        for i in range(6):
            await set_override(console, CLEAR if i % 2 == 0 else FORCE_OPEN, f"flip {i}")
        got = [[await page.next() for _ in range(6)] for page in (first, second)]
    for events in got:
        assert [e.data["transition"]["detail"] for e in events] == [
            f"flip {i} (by operator-person)" for i in range(6)]
        assert all(e.id == e.data["revision"] for e in events)
    assert [e.id for e in got[0]] == [e.id for e in got[1]]

    def following() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks()
                if t.get_name().startswith("console-feed shared") and not t.done()]

    await eventually_async(lambda: len(shared) == 0 and not following(),
                           what="the shared follow gone with its last page",
                           details=lambda: f"{len(shared)} follows, tasks {following()}")


async def test_a_page_resuming_from_a_shared_id_gets_only_what_followed(console: Console) -> None:
    async with open_feed(console) as watching:
        await watching.until("synced")
        await set_override(console, CLEAR, "seen")
        seen = await watching.next()
        await set_override(console, FORCE_OPEN, "missed")
        async with open_feed(console, **{"Last-Event-ID": seen.id or ""}) as resumed:
            synced, before = await resumed.until("synced")
            missed = await resumed.next()
    assert before == [] and synced.id == seen.id
    assert missed.data["transition"]["detail"] == "missed (by operator-person)"
