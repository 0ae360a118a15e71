"""The one way tests wait for something another thread, task or process makes true.

Tests never sleep a fixed time to wait for a server, an agent or a stream: they
poll a condition until it holds, and fail after a deadline saying what did not
happen (and, through ``details``, what would help to know why)::

    eventually(lambda: server.ready(), what="the server serving")            # threads
    await eventually_async(lambda: fb.policies is not None, what="policies")  # a loop's tasks

Both share one polling schedule (``_polls``); the async form yields to the
event loop between looks instead of blocking it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

#: How long a condition may take by default: generous, for a loaded CI machine.
DEADLINE = 10.0
POLL = 0.01


def _polls(condition: Callable[[], bool], deadline: float, what: str,
           details: Callable[[], str] | None) -> Iterator[float]:
    """Yield the pause before the next look until ``condition()`` holds; then stop.
    Past ``deadline`` seconds, fail with ``what`` (and ``details()``)."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            more = f"\n{details()}" if details is not None else ""
            raise AssertionError(f"{what} did not happen within {deadline:g}s{more}")
        yield POLL


def eventually(condition: Callable[[], bool], *, deadline: float = DEADLINE,
               what: str = "the condition", details: Callable[[], str] | None = None) -> float:
    """Block until ``condition()`` is true (polled every 10 ms), at most ``deadline`` s;
    the seconds it took."""
    start = time.monotonic()
    for pause in _polls(condition, deadline, what, details):
        time.sleep(pause)
    return time.monotonic() - start


async def eventually_async(condition: Callable[[], bool], *, deadline: float = DEADLINE,
                           what: str = "the condition",
                           details: Callable[[], str] | None = None) -> float:
    """``eventually`` for coroutines: the loop runs other tasks between looks."""
    start = time.monotonic()
    for pause in _polls(condition, deadline, what, details):
        await asyncio.sleep(pause)
    return time.monotonic() - start
