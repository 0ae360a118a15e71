"""One connected agent stream and what is waiting to be sent to it.

Outgoing messages are coalesced so a slow agent costs bounded memory: only the
newest unsent policy snapshot is kept, only the newest unsent update per
breaker, and a bounded queue of control messages (mode changes, rejections).
Breaker updates are pre-serialized bytes, shared by every session that holds
the breaker: serialised once per transition, not once per agent. Budget
shares are coalesced per budget key (only the newest unsent share of a key
is kept) and go out as one ``BudgetShares`` after the snapshot they belong to.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.budget import BudgetKey
from fusebox.agent.policy import CircuitBreakerPolicy, ResolvedPolicies, resolved_from_proto
from fusebox.v1 import agent_pb2, policy_pb2

if TYPE_CHECKING:
    from fusebox.controlplane.server.engines.call_tally import CallTally

AppKey = tuple[str, str]  # (namespace, app_id)
SpecKey = tuple[str, str]  # (namespace, name)
Outgoing = agent_pb2.ConnectResponse | bytes

MAX_CONTROL_MESSAGES = 256
MAX_INTEREST = 10_000  # breakers one agent may hold (its LRU bounds are far lower)


@dataclass(frozen=True, slots=True)
class PreparedSnapshot:
    """One app's policy snapshot, decoded and serialized once for all its sessions.

    ``specs``: the specs in scope for the app when it was resolved (what an
    agent that accepts it has loaded, as Dapr's ``resiliency_loaded`` counts).
    """

    digest: str
    resolved: ResolvedPolicies
    serialized: bytes
    specs: frozenset[SpecKey] = frozenset()

    @classmethod
    def build(cls, policies: policy_pb2.ResolvedPolicies, store_revision: int,
              control_plane_id: str = "", specs: frozenset[SpecKey] = frozenset(),
              ) -> PreparedSnapshot:
        message = agent_pb2.ConnectResponse(snapshot=agent_pb2.PolicySnapshot(
            policies=policies, store_revision=store_revision, control_plane_id=control_plane_id,
        ))
        return cls(policies.digest, resolved_from_proto(policies), message.SerializeToString(),
                   specs)


class AgentSession:
    def __init__(self, namespace: str, app_id: str, instance_id: str, peer: str) -> None:
        self.namespace, self.app_id, self.instance_id, self.peer = (
            namespace, app_id, instance_id, peer,
        )
        self.sent_digest = ""
        self.acked_digest = ""
        #: The policies last sent, decoded: what reports and leases are checked against.
        self.policies: ResolvedPolicies | None = None
        #: Report keys already looked up against ``policies`` (the ingest hot path):
        #: wire key fields -> (breaker key, its policy, its target's call tally), or
        #: None for a refused key.
        self.breaker_policies: dict[
            tuple[str, str, int, str, str],
            tuple[BreakerKey, CircuitBreakerPolicy, CallTally] | None,
        ] = {}
        self.interest: set[BreakerKey] = set()
        self.rejected_keys: set[BreakerKey] = set()
        #: The agent answers the breaker updates it applies (BreakerInterest.acks_updates).
        self.acks_updates = False
        #: The specs of the last snapshot the agent accepted (see PreparedSnapshot).
        self.loaded_specs: frozenset[SpecKey] = frozenset()
        #: The snapshot last written to the stream (what a PolicyAck answers).
        self.sent_snapshot: PreparedSnapshot | None = None
        self.closed = False
        self._snapshot: PreparedSnapshot | None = None
        self._updates: dict[BreakerKey, bytes] = {}
        self._shares: dict[BudgetKey, agent_pb2.BudgetShare] = {}
        self._control: collections.deque[Outgoing] = collections.deque()
        self._wake = asyncio.Event()

    @property
    def app(self) -> AppKey:
        return (self.namespace, self.app_id)

    def offer_snapshot(
        self, snapshot: PreparedSnapshot | policy_pb2.ResolvedPolicies, store_revision: int = 0
    ) -> bool:
        """Queue ``snapshot`` (replacing an unsent one); False when the agent was
        sent these policies already and nothing else is queued."""
        if not isinstance(snapshot, PreparedSnapshot):
            snapshot = PreparedSnapshot.build(snapshot, store_revision)
        if snapshot.digest == self.sent_digest and self._snapshot is None:
            return False
        self._snapshot = snapshot
        self.policies = snapshot.resolved
        self.breaker_policies.clear()  # answers computed from the previous policies
        self._wake.set()
        return True

    def offer_update(self, key: BreakerKey, serialized: bytes) -> None:
        """Queue a breaker update; an unsent older one for the same breaker is replaced."""
        self._updates.pop(key, None)
        self._updates[key] = serialized
        self._wake.set()

    def offer_shares(self, shares: dict[BudgetKey, agent_pb2.BudgetShare]) -> None:
        """Queue budget shares; an unsent older share of the same key is replaced."""
        if shares:
            self._shares.update(shares)
            self._wake.set()

    def offer_control(self, message: Outgoing) -> bool:
        """Queue a control message; False (dropped) when the agent is not keeping up."""
        if len(self._control) >= MAX_CONTROL_MESSAGES:
            return False
        self._control.append(message)
        self._wake.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next_message(self) -> Outgoing | None:
        """The next message to send, or None once the session is closed."""
        while True:
            if self.closed:
                return None
            if self._snapshot is not None:
                snapshot, self._snapshot = self._snapshot, None
                self.sent_digest = snapshot.digest
                self.sent_snapshot = snapshot
                return snapshot.serialized
            if self._control:
                return self._control.popleft()
            if self._shares:
                shares, self._shares = self._shares, {}
                return agent_pb2.ConnectResponse(
                    budget_shares=agent_pb2.BudgetShares(shares=shares.values())
                )
            if self._updates:
                key = next(iter(self._updates))
                return self._updates.pop(key)
            self._wake.clear()
            await self._wake.wait()
