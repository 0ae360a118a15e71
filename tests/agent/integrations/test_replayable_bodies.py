"""A one-shot request body is recorded as it is sent and replayed by a retry (sync and async)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from fusebox.agent.integrations import _AsyncReplayableIterable, _ReplayableIterable

MODES = ("sync", "async")


class Source:
    """Yields ``chunks`` once; ``pulled`` counts what was read from it."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks
        self.pulled = 0

    def sync(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk

    async def coro(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


def attempts(mode: str, source: Source, reads: list[int | None]) -> list[list[bytes]]:
    """Iterate the replayable body once per entry of ``reads``: that many items (None: all)."""
    if mode == "sync":
        body = _ReplayableIterable(source.sync())
        return [list(itertools.islice(body, n)) for n in reads]

    async def run() -> list[list[bytes]]:
        abody = _AsyncReplayableIterable(source.coro())
        out = []
        for n in reads:
            got: list[bytes] = []
            async for item in abody:
                got.append(item)
                if n is not None and len(got) == n:
                    break
            out.append(got)
        return out

    return asyncio.run(run())


@pytest.mark.parametrize("mode", MODES)
def test_a_retry_replays_what_was_sent_then_reads_on(mode: str) -> None:
    source = Source(b"a", b"b", b"c")
    assert attempts(mode, source, [2, None, None]) == [
        [b"a", b"b"], [b"a", b"b", b"c"], [b"a", b"b", b"c"]]
    assert source.pulled == 3


@pytest.mark.parametrize("mode", MODES)
def test_an_empty_body_replays_empty(mode: str) -> None:
    assert attempts(mode, Source(), [None, None]) == [[], []]
