"""Outcome reporting: per-breaker accumulators and the compact wire encoding.

The call path records each outcome of a breaker-guarded attempt with one
``deque.append`` (atomic under the GIL: no lock of ours, no I/O) of an integer
*code*, ``generation << 1 | success``, where ``generation`` is the cluster
generation the agent had adopted when the call completed. The link's flusher
drains the accumulators on its own event loop and packs what it found into
``OutcomeReport`` messages:

* per breaker, consecutive outcomes of the same generation become one
  ``BreakerOutcomes`` entry whose ``runs`` are run lengths (+n successes,
  -n failures), in completion order;
* an entry holds at most ``max_runs`` runs; longer sequences continue in the
  next entry, and a message holds at most ``max_breakers`` entries; longer
  reports continue in the next message. Splitting never reorders outcomes.

>>> run_lengths([True, True, False, True])
[2, -1, 1]
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from agent._proto.fusebox.v1 import agent_pb2, policy_pb2

#: Outcomes one breaker may hold between two flushes. Past it the oldest are
#: dropped: memory stays bounded even if the flusher falls far behind.
ACCUMULATOR_CAPACITY = 65_536


def outcome_code(generation: int, success: bool) -> int:
    """What the call path appends for one outcome."""
    return generation << 1 | success


class OutcomeAccumulator:
    """The outcomes of one breaker not yet reported, oldest first.

    ``append`` is the bound ``deque.append``: the call path calls it directly.
    ``drain`` may run concurrently with appends (it takes exactly the codes
    present when it started; later ones wait for the next flush).
    """

    __slots__ = ("_codes", "append")

    def __init__(self, capacity: int = ACCUMULATOR_CAPACITY) -> None:
        self._codes: collections.deque[int] = collections.deque(maxlen=capacity)
        self.append = self._codes.append

    def __len__(self) -> int:
        return len(self._codes)

    def drain(self) -> list[int]:
        """Remove and return the accumulated codes, in the order they were appended."""
        popleft = self._codes.popleft
        return [popleft() for _ in range(len(self._codes))]

    def clear(self) -> None:
        self._codes.clear()


def run_lengths(outcomes: Iterable[bool]) -> list[int]:
    """Run-length encode successes (+n) and failures (-n), preserving order."""
    runs: list[int] = []
    for success in outcomes:
        step = 1 if success else -1
        if runs and (runs[-1] > 0) == success:
            runs[-1] += step
        else:
            runs.append(step)
    return runs


def decode_runs(runs: Iterable[int]) -> list[bool]:
    """The outcomes a run-length sequence stands for (the inverse of ``run_lengths``)."""
    return [run > 0 for run in runs for _ in range(abs(run))]


@dataclass(frozen=True, slots=True)
class ReportLimits:
    """Bounds of one ``OutcomeReport`` (kept below the server's own limits)."""

    max_runs: int = 1024  # runs per BreakerOutcomes entry
    max_breakers: int = 256  # entries per message

    def __post_init__(self) -> None:
        if self.max_runs < 1 or self.max_breakers < 1:
            raise ValueError("report limits must be at least 1")


def outcome_entries(
    key: policy_pb2.BreakerKey, codes: Sequence[int], limits: ReportLimits
) -> list[agent_pb2.BreakerOutcomes]:
    """The entries reporting ``codes`` (from ``OutcomeAccumulator.drain``) for ``key``."""
    entries: list[agent_pb2.BreakerOutcomes] = []
    start = 0
    while start < len(codes):
        generation = codes[start] >> 1
        end = start
        while end < len(codes) and codes[end] >> 1 == generation:
            end += 1
        runs = run_lengths(bool(code & 1) for code in codes[start:end])
        for i in range(0, len(runs), limits.max_runs):
            entries.append(agent_pb2.BreakerOutcomes(
                key=key, runs=runs[i:i + limits.max_runs], generation=generation,
            ))
        start = end
    return entries


def probe_entry(
    key: policy_pb2.BreakerKey, generation: int, lease_id: str, success: bool
) -> agent_pb2.BreakerOutcomes:
    """The entry reporting one half-open probe's outcome under its lease."""
    return agent_pb2.BreakerOutcomes(
        key=key, runs=[1 if success else -1], generation=generation, lease_id=lease_id,
    )


def pack_reports(
    entries: Iterable[agent_pb2.BreakerOutcomes], limits: ReportLimits, sequence: Iterator[int]
) -> list[agent_pb2.OutcomeReport]:
    """Group ``entries`` into messages of at most ``limits.max_breakers``, in order."""
    reports: list[agent_pb2.OutcomeReport] = []
    batch: list[agent_pb2.BreakerOutcomes] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == limits.max_breakers:
            reports.append(agent_pb2.OutcomeReport(breakers=batch, sequence=next(sequence)))
            batch = []
    if batch:
        reports.append(agent_pb2.OutcomeReport(breakers=batch, sequence=next(sequence)))
    return reports
