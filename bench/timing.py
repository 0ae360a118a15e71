"""Per-call timing, ``timeit``-style, for sync statements and awaited expressions.

Every variant of one comparison is calibrated once (auto-range to about
``target_seconds`` per repeat, bounded by ``max_loops``), then the repeats are
*interleaved*: repeat 1 of every variant, then repeat 2 of every variant, and
so on. On a shared machine a burst of load then hits all variants of a
comparison alike instead of whichever happened to run at that moment.

Loops run with the garbage collector disabled (as ``timeit`` does), so a
collection triggered by one variant's garbage is not billed to another.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# A loop body that runs `n` times and returns the elapsed seconds.
TimedLoop = Callable[[int], float]


@dataclass(frozen=True, slots=True)
class Budget:
    """How long each variant is measured."""

    target_seconds: float = 0.1  # per repeat, after auto-ranging
    repeats: int = 7
    max_loops: int = 2_000_000  # a bound on the loop count whatever the clock says
    warmup_loops: int = 2_000


@dataclass(frozen=True, slots=True)
class Measurement:
    """Nanoseconds per call of one variant, over ``repeats`` runs of ``loops`` calls."""

    name: str
    label: str
    best_ns: float
    median_ns: float
    loops: int
    repeats: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "label": self.label, "best_ns": round(self.best_ns, 1),
            "median_ns": round(self.median_ns, 1), "loops": self.loops, "repeats": self.repeats,
        }


@dataclass(frozen=True, slots=True)
class Variant:
    """One thing to time: ``label`` is what the report prints."""

    name: str
    label: str
    loop: TimedLoop


@contextmanager
def gc_disabled() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def sync_loop(statement: str, namespace: Mapping[str, Any]) -> TimedLoop:
    """A loop running ``statement`` (e.g. ``"target.call(fn)"``) inline, as ``timeit`` does."""
    timer = timeit.Timer(statement, globals=dict(namespace))

    def run(n: int) -> float:
        return timer.timeit(n)  # timeit disables the GC itself

    return run


AsyncTimed = Callable[[Iterator[None], Callable[[], float]], Awaitable[float]]


def compiled_async_loop(expression: str, namespace: Mapping[str, Any]) -> AsyncTimed:
    """``async def _timed(it, perf_counter)`` awaiting ``expression`` once per item of ``it``.

    Compiled from source like ``timeit`` does, so the only overhead around the
    measured expression is the ``for`` itself. Returns the elapsed seconds.
    """
    source = (
        "async def _timed(_it, _perf_counter):\n"
        "    _t0 = _perf_counter()\n"
        "    for _ in _it:\n"
        f"        await {expression}\n"
        "    return _perf_counter() - _t0\n"
    )
    scope: dict[str, Any] = dict(namespace)
    exec(compile(source, f"<bench {expression}>", "exec"), scope)
    timed: AsyncTimed = scope["_timed"]
    return timed


def async_loop(expression: str, namespace: Mapping[str, Any],
               loop: asyncio.AbstractEventLoop) -> TimedLoop:
    """A loop awaiting ``expression`` (e.g. ``"target.call(coro_fn)"``) inline, on ``loop``."""
    timed = compiled_async_loop(expression, namespace)

    def run(n: int) -> float:
        with gc_disabled():
            return loop.run_until_complete(timed(itertools.repeat(None, n), time.perf_counter))

    return run


def _calibrate(loop: TimedLoop, budget: Budget) -> int:
    """The loop count that takes about ``budget.target_seconds`` (timeit's autorange, scaled)."""
    n = 1
    while True:
        elapsed = loop(n)
        if elapsed >= budget.target_seconds / 10 or n >= budget.max_loops:
            break
        n *= 10
    per_call = max(elapsed / n, 1e-9)
    return max(1, min(budget.max_loops, int(budget.target_seconds / per_call)))


def measure(variants: Sequence[Variant], budget: Budget) -> list[Measurement]:
    """Calibrate each variant, then run the repeats interleaved across variants."""
    loops: list[int] = []
    for variant in variants:
        variant.loop(budget.warmup_loops)
        loops.append(_calibrate(variant.loop, budget))
    samples: list[list[float]] = [[] for _ in variants]
    for _ in range(budget.repeats):
        for i, variant in enumerate(variants):
            samples[i].append(variant.loop(loops[i]) / loops[i] * 1e9)
    return [
        Measurement(v.name, v.label, min(s), statistics.median(s), n, budget.repeats)
        for v, s, n in zip(variants, samples, loops, strict=True)
    ]
