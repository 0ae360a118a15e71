"""Outcome reporting: per-breaker accumulators and the compact wire encoding.

Each outcome of a breaker-guarded attempt is recorded with the fleet
generation its call was admitted under, as a *code*, ``generation << 1 |
success``. A breaker's ``OutcomeAccumulator`` keeps them as runs of equal
codes, oldest first, so a streak of successes costs one entry, not one per
call:

* the closed-success fast path (lock-free, like ``BreakerStateMachine``'s)
  only advances an ``itertools.count`` for the current generation's success
  code (``success``: one atomic C-level step);
* everything else (failures, probes, successes of an older generation) is
  ``add``-ed under the breaker's lock, after the counted successes are folded
  in as one run, so the order of outcomes is kept.

Calls the breaker *rejected* are only counted (``rejected``, under the
breaker's lock, on the rejection paths, which are never the closed fast
path): they never ran, so they have no place in the runs, and the server only
sums them per target.

The link's flusher ``drain``-s each accumulator (under the breaker's lock,
once per flush, never on a call path) and packs what it found into
``OutcomeReport`` messages:

* per breaker, consecutive outcomes of the same generation become one
  ``BreakerOutcomes`` entry whose ``runs`` are run lengths (+n successes,
  -n failures), in completion order;
* an entry holds at most ``max_runs`` runs; longer sequences continue in the
  next entry, and a message holds at most ``max_breakers`` entries; longer
  reports continue in the next message. Splitting never reorders outcomes;
* the rejections counted since the last flush ride on the breaker's last
  entry (``rejected``), or on an entry of their own with no runs.

>>> run_lengths([True, True, False, True])
[2, -1, 1]
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from fusebox.agent.breaker import counted
from fusebox.v1 import agent_pb2, policy_pb2

#: Runs one breaker may hold between two flushes. Past it the oldest are
#: dropped: memory stays bounded even if the flusher falls far behind (a run
#: of successes is one entry however long, so only alternating outcomes count).
ACCUMULATOR_CAPACITY = 65_536
#: The longest run one wire entry carries (``runs`` are ``sint32``).
MAX_RUN = 2**31 - 1

#: (code, count): ``count`` outcomes with that code, in order.
CodeRun = tuple[int, int]


def outcome_code(generation: int, success: bool) -> int:
    """What an outcome is recorded as."""
    return generation << 1 | success


class OutcomeAccumulator:
    """The outcomes of one breaker not yet reported (see the module docstring).

    ``success`` is ``(generation, bump)`` while successes of ``generation`` are
    counted lock-free, else ``None``. Every other method runs under the owning
    breaker's lock.
    """

    __slots__ = ("_code", "_counter", "_runs", "_seen", "rejected", "success")

    def __init__(self, capacity: int = ACCUMULATOR_CAPACITY) -> None:
        self._runs: collections.deque[list[int]] = collections.deque(maxlen=capacity)
        self._counter: itertools.count[int] | None = None
        self._code = 0
        self._seen = 0
        #: Calls rejected since the last drain (bumped under the breaker's lock).
        self.rejected = 0
        self.success: tuple[int, Callable[[], int]] | None = None

    def count_successes(self, generation: int | None) -> None:
        """Count successes of ``generation`` lock-free from now on (None: stop)."""
        self.fold()
        if generation is None:
            self._counter = self.success = None
            return
        counter = itertools.count()
        self._counter, self._code, self._seen = counter, outcome_code(generation, True), 0
        self.success = (generation, counter.__next__)

    def add(self, code: int) -> None:
        """One outcome, after the successes counted so far."""
        self.fold()
        self._append(code, 1)

    def fold(self) -> None:
        """Move the successes counted lock-free into the runs, in order."""
        counter = self._counter
        if counter is None:
            return
        total = counted(counter)
        if total > self._seen:
            self._append(self._code, total - self._seen)
            self._seen = total

    def pending(self) -> bool:
        """Whether a drain now would find anything (callable without the lock)."""
        counter = self._counter
        return bool(self._runs) or self.rejected > 0 or (
            counter is not None and counted(counter) > self._seen
        )

    def drain(self) -> list[CodeRun]:
        """Remove and return the runs, oldest first."""
        self.fold()
        popleft = self._runs.popleft
        return [(run[0], run[1]) for run in (popleft() for _ in range(len(self._runs)))]

    def drain_rejected(self) -> int:
        """Remove and return the count of rejected calls."""
        rejected, self.rejected = self.rejected, 0
        return rejected

    def clear(self) -> None:
        self.fold()
        self._runs.clear()
        self.rejected = 0

    def _append(self, code: int, count: int) -> None:
        runs = self._runs
        if runs and runs[-1][0] == code:
            runs[-1][1] += count
        else:
            runs.append([code, count])


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
    key: policy_pb2.BreakerKey, runs: Sequence[CodeRun], limits: ReportLimits,
    rejected: int = 0,
) -> list[agent_pb2.BreakerOutcomes]:
    """The entries reporting ``runs`` (from ``OutcomeAccumulator.drain``) and
    ``rejected`` calls for ``key``.

    The rejections ride on the last entry; with no runs they get an entry of
    their own (no runs, generation 0: the server only counts them).
    """
    entries = _run_entries(key, runs, limits)
    if rejected > 0:
        if entries:
            entries[-1].rejected = rejected
        else:
            entries.append(agent_pb2.BreakerOutcomes(key=key, rejected=rejected))
    return entries


def _run_entries(
    key: policy_pb2.BreakerKey, runs: Sequence[CodeRun], limits: ReportLimits
) -> list[agent_pb2.BreakerOutcomes]:
    entries: list[agent_pb2.BreakerOutcomes] = []
    signed: list[int] = []
    generation = None
    for code, count in runs:
        if code >> 1 != generation:
            _flush_entries(entries, key, generation, signed, limits)
            generation, signed = code >> 1, []
        step = 1 if code & 1 else -1
        while count > 0:
            n = min(count, MAX_RUN)
            if signed and (signed[-1] > 0) == (step > 0) and abs(signed[-1]) + n <= MAX_RUN:
                signed[-1] += step * n
            else:
                signed.append(step * n)
            count -= n
    _flush_entries(entries, key, generation, signed, limits)
    return entries


def _flush_entries(entries: list[agent_pb2.BreakerOutcomes], key: policy_pb2.BreakerKey,
                   generation: int | None, signed: list[int], limits: ReportLimits) -> None:
    if generation is None or not signed:
        return
    for i in range(0, len(signed), limits.max_runs):
        entries.append(agent_pb2.BreakerOutcomes(
            key=key, runs=signed[i:i + limits.max_runs], generation=generation,
        ))


def probe_entry(
    key: policy_pb2.BreakerKey, generation: int, lease_id: str, success: bool
) -> agent_pb2.BreakerOutcomes:
    """The entry reporting one half-open probe's outcome under its lease."""
    return agent_pb2.BreakerOutcomes(
        key=key, runs=[1 if success else -1], generation=generation, lease_id=lease_id,
    )


def pack_reports(
    entries: Iterable[agent_pb2.BreakerOutcomes], limits: ReportLimits, sequence: Iterator[int],
    budgets: Sequence[agent_pb2.BudgetUsage] = (),
    share_acks: Sequence[agent_pb2.BudgetShareAck] = (),
) -> list[agent_pb2.OutcomeReport]:
    """Group ``entries`` into messages of at most ``limits.max_breakers``, in order.

    Budget usage entries and share acks (docs/budgets.md) ride on the same
    messages, at most ``limits.max_breakers`` of each per message; they get
    messages of their own only when there are more of them than of breakers.
    """
    per = limits.max_breakers
    reports: list[agent_pb2.OutcomeReport] = []
    batch: list[agent_pb2.BreakerOutcomes] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == per:
            reports.append(agent_pb2.OutcomeReport(breakers=batch, sequence=next(sequence)))
            batch = []
    if batch:
        reports.append(agent_pb2.OutcomeReport(breakers=batch, sequence=next(sequence)))
    extra = max(len(budgets), len(share_acks))
    while len(reports) * per < extra:
        reports.append(agent_pb2.OutcomeReport(sequence=next(sequence)))
    for i, report in enumerate(reports):
        report.budgets.extend(budgets[i * per:(i + 1) * per])
        report.share_acks.extend(share_acks[i * per:(i + 1) * per])
    return reports
