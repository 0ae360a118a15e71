"""Calls per target, summed from agents' reports (``fusebox_target_calls_total``).

Every ``BreakerOutcomes`` entry an agent reports adds its successes, failures
and rejected calls to the tally of (calling app, spec, target): methods and
instances are summed. Tallies are plain integers on the ingest path and are
moved into the Prometheus counters once per aggregation round, as the other
ingest counters are (a Prometheus counter takes a lock per increment).
"""

from __future__ import annotations

from prometheus_client import Counter

from fusebox.agent.breaker_key import BreakerKey
from fusebox.controlplane.server.engines.sessions import AgentSession

SUCCESS, FAILURE, REJECTED = "success", "failure", "rejected"

TallyKey = tuple[str, str, str, str, str]  # namespace, app_id, spec, kind, target


class CallTally:
    """The calls of one (calling app, target) not yet added to the counters."""

    __slots__ = ("_counters", "dirty", "failures", "rejected", "successes")

    def __init__(self, counter: Counter, key: TallyKey) -> None:
        self.successes = self.failures = self.rejected = 0
        self.dirty = False
        self._counters = tuple(counter.labels(*key, outcome)
                               for outcome in (SUCCESS, FAILURE, REJECTED))

    def flush(self) -> None:
        """Add what was counted to the Prometheus counters."""
        success, failure, rejected = self._counters
        if self.successes:
            success.inc(self.successes)
        if self.failures:
            failure.inc(self.failures)
        if self.rejected:
            rejected.inc(self.rejected)
        self.successes = self.failures = self.rejected = 0
        self.dirty = False


class CallTallies:
    """Every ``CallTally`` of a replica; ``flush`` moves the dirty ones into ``counter``.

    Bounded by calling apps x targets of their policies: a report key is
    tallied only once its breaker's policy is found in the agent's policies.
    """

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._tallies: dict[TallyKey, CallTally] = {}
        self._dirty: list[CallTally] = []

    def tally(self, session: AgentSession, key: BreakerKey) -> CallTally:
        tally_key = (key.namespace, session.app_id, key.spec, key.kind.value, key.target)
        tally = self._tallies.get(tally_key)
        if tally is None:
            tally = self._tallies[tally_key] = CallTally(self._counter, tally_key)
        return tally

    def touched(self, tally: CallTally) -> None:
        """``tally`` has counts to flush (the ingest path calls this once per change)."""
        tally.dirty = True
        self._dirty.append(tally)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for tally in dirty:
            tally.flush()
