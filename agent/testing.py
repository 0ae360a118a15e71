"""Testing switches (like stamina's ``set_testing``) and a manual clock.

In a user's unit tests::

    from fusebox.agent.testing import set_testing, testing

    set_testing(True)                 # retry waits are skipped, no server is contacted
    with testing(policies=False):     # or: every call passes straight through
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TestingConfig:
    """The active switches; ``enabled`` False means production behaviour."""

    __test__ = False  # not a pytest test class

    enabled: bool = False
    waits: bool = True
    policies: bool = True


#: Read on every call; replaced (never mutated) by ``set_testing``.
config = TestingConfig()


def set_testing(testing: bool, *, waits: bool = False, policies: bool = True) -> None:
    """Turn testing mode on or off for every agent in the process.

    With ``testing`` True: retry back-off delays are not waited for unless
    ``waits`` is True (attempts, breakers and timeouts still apply); with
    ``policies`` False every guarded call runs the callable directly; agents
    never start a server link (they use only static ``policies``).
    """
    global config
    config = (
        TestingConfig(True, waits=waits, policies=policies) if testing else TestingConfig()
    )


def is_testing() -> bool:
    """Whether testing mode is on."""
    return config.enabled


@contextlib.contextmanager
def testing(testing: bool = True, *, waits: bool = False, policies: bool = True) -> Iterator[None]:
    """``set_testing`` for the duration of a ``with`` block, then restore the previous mode."""
    global config
    previous = config
    set_testing(testing, waits=waits, policies=policies)
    try:
        yield
    finally:
        config = previous


class ManualClock:
    """A clock that only moves when told to: ``advance(seconds)``, or a sleep.

    Sleeping advances the time at once and records the delay in ``sleeps``, so
    a retry schedule can be asserted exactly without waiting.
    """

    __test__ = False

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # still a suspension point, as a real sleep would be
