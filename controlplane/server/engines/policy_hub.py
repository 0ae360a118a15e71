"""Resolved policies per connected (namespace, app-id), kept fresh.

The hub follows the store's change feed (so writes through any server replica
sharing the store are seen), re-resolves the policies of every app that has
agents connected here, and offers a new snapshot to the sessions whose policy
digest changed. Parsed specs are cached by digest: a change re-parses only
the documents that changed.

It also keeps what the fleet's view of specs needs: which specs the agents
connected here have loaded (``loaded_specs``: the specs in scope of the last
snapshot each accepted) and how long a spec change takes to be acknowledged
by every agent it was offered to (the policy ``ConvergenceTracker``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator

from fusebox.agent.policy import resolved_to_proto
from fusebox.controlplane.resolve import resolve_policies
from fusebox.controlplane.server.engines.convergence import (
    DEFAULT_DEADLINE,
    ConvergenceTracker,
)
from fusebox.controlplane.server.engines.sessions import (
    AgentSession,
    AppKey,
    PreparedSnapshot,
    SpecKey,
)
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.metrics import LoadedSpec, Metrics
from fusebox.controlplane.spec import SpecValidationError, parse_document_mapping
from fusebox.controlplane.spec.model import ResiliencySpec
from fusebox.controlplane.spec_store.base import SpecStore, StoredSpec
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import policy_pb2

log = logging.getLogger("fusebox.server.policies")

def specs_in_scope(specs: Iterable[ResiliencySpec], namespace: str,
                   app_id: str) -> frozenset[SpecKey]:
    """The specs an agent of (namespace, app-id) loads (Dapr's scoping)."""
    return frozenset(s.key for s in specs if s.namespace == namespace and s.applies_to(app_id))


class PolicyHub:
    def __init__(
        self,
        store: SpecStore,
        metrics: Metrics | None = None,
        *,
        convergence_deadline: float = DEFAULT_DEADLINE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock
        self._control_plane_id = ""  # the store's, once read
        self._sessions: dict[AppKey, set[AgentSession]] = defaultdict(set)
        self._parsed: dict[str, ResiliencySpec | None] = {}
        #: The live specs, as last listed (replaced whole: read by the metrics thread).
        self._live: frozenset[SpecKey] = frozenset()
        #: How many sessions here accepted a snapshot with each spec in scope.
        self._loaded: dict[SpecKey, int] = {}
        #: Snapshots offered on a spec change, waiting for their PolicyAcks.
        self.convergence: ConvergenceTracker[AppKey, str] = ConvergenceTracker(
            ordered=False, deadline=convergence_deadline, clock=clock,
            unfinished=metrics.unfinished("policy") if metrics else lambda reason: None,
        )
        self._converged: Callable[[float], None] = (
            metrics.policy_convergence.observe if metrics else lambda seconds: None
        )
        if metrics is not None:
            metrics.watch_pending("policy", lambda: self.convergence.pending)

    # -- sessions ------------------------------------------------------------

    def register(self, session: AgentSession) -> None:
        self._sessions[session.app].add(session)

    def unregister(self, session: AgentSession) -> None:
        sessions = self._sessions.get(session.app)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[session.app]
        self._count_loaded(session.loaded_specs, -1)
        session.loaded_specs = frozenset()
        self.convergence.forget(session)

    def acked(self, session: AgentSession, digest: str, accepted: bool) -> None:
        """The agent's PolicyAck (``accepted`` False: a NACK, it keeps its policies)."""
        sent = session.sent_snapshot
        registered = session in self._sessions.get(session.app, ())
        if (accepted and registered and sent is not None and sent.digest == digest
                and sent.specs != session.loaded_specs):
            self._count_loaded(session.loaded_specs, -1)
            self._count_loaded(sent.specs, +1)
            session.loaded_specs = sent.specs
        self.convergence.answered(session, session.app, digest, accepted)

    def _count_loaded(self, specs: Iterable[SpecKey], step: int) -> None:
        loaded = self._loaded
        for spec in specs:
            count = loaded.get(spec, 0) + step
            if count > 0:
                loaded[spec] = count
            else:
                loaded.pop(spec, None)

    def loaded_specs(self) -> list[LoadedSpec]:
        """Every live spec, and every spec an agent here still holds, with the
        number of agents here that hold it (``fusebox_fleet_resiliency_loaded``)."""
        loaded = dict(self._loaded)  # one C-level copy: safe from the metrics thread
        keys = sorted(self._live | loaded.keys())
        return [(namespace, name, loaded.get((namespace, name), 0)) for namespace, name in keys]

    def sessions(self) -> Iterator[AgentSession]:
        for group in list(self._sessions.values()):
            yield from list(group)

    def find(self, instance_id: str) -> AgentSession | None:
        return next((s for s in self.sessions() if s.instance_id == instance_id), None)

    @property
    def session_count(self) -> int:
        return sum(len(s) for s in self._sessions.values())

    def close_all(self) -> None:
        for sessions in self._sessions.values():
            for session in sessions:
                session.close()

    # -- resolution ----------------------------------------------------------

    def _parse(self, stored: StoredSpec) -> ResiliencySpec | None:
        if stored.digest not in self._parsed:
            try:
                parsed = parse_document_mapping(
                    dict(stored.document), f"{stored.namespace}/{stored.name}@{stored.revision}"
                ).spec
            except SpecValidationError as e:
                # Stored before a stricter validator: skip it loudly rather than
                # let one document break every app's policies.
                log_event(log, logging.ERROR, "stored spec no longer valid, ignored",
                          namespace=stored.namespace, name=stored.name,
                          revision=stored.revision, error=str(e))
                parsed = None
            self._parsed[stored.digest] = parsed
        return self._parsed[stored.digest]

    def _specs(self, stored: Iterable[StoredSpec]) -> list[ResiliencySpec]:
        return [p for p in (self._parse(s) for s in stored) if p is not None]

    async def specs(self, namespace: str) -> list[ResiliencySpec]:
        """The specs stored in ``namespace``, parsed (those no longer valid left out)."""
        stored, _ = await self._store.list(namespace)
        return self._specs(stored)

    async def resolve(self, namespace: str, app_id: str) -> tuple[policy_pb2.ResolvedPolicies, int]:
        stored, store_revision = await self._store.list(namespace)
        resolved = resolve_policies(self._specs(stored), namespace, app_id)
        return resolved_to_proto(resolved), store_revision

    async def control_plane_id(self) -> str:
        """The store's persistent control-plane id (read once): sent with every snapshot."""
        if not self._control_plane_id:
            self._control_plane_id = await self._store.control_plane_id()
        return self._control_plane_id

    async def snapshot(self, namespace: str, app_id: str) -> PreparedSnapshot:
        """The snapshot an agent of (namespace, app-id) gets when it connects."""
        stored, store_revision = await self._store.list(namespace)
        specs = self._specs(stored)
        policies = resolved_to_proto(resolve_policies(specs, namespace, app_id))
        return PreparedSnapshot.build(policies, store_revision, await self.control_plane_id(),
                                      specs_in_scope(specs, namespace, app_id))

    async def push_all(self) -> int:
        """Re-resolve every connected app and offer changed snapshots.

        Each snapshot offered is tracked until the sessions it went to
        acknowledge it (policy convergence, from the moment this runs).
        """
        started_at = self._clock()
        stored, store_revision = await self._store.list(None)
        self._live = frozenset((s.namespace, s.name) for s in stored)
        live_digests = {s.digest for s in stored}
        for digest in [d for d in self._parsed if d not in live_digests]:
            del self._parsed[digest]
        if not self._sessions:
            return store_revision
        control_plane_id = await self.control_plane_id()
        by_namespace: dict[str, list[StoredSpec]] = defaultdict(list)
        for s in stored:
            by_namespace[s.namespace].append(s)
        for (namespace, app_id), sessions in list(self._sessions.items()):
            specs = self._specs(by_namespace[namespace])
            resolved = resolved_to_proto(resolve_policies(specs, namespace, app_id))
            snapshot = PreparedSnapshot.build(resolved, store_revision, control_plane_id,
                                              specs_in_scope(specs, namespace, app_id))
            offered = [s for s in list(sessions) if s.offer_snapshot(snapshot)]
            self.convergence.offered((namespace, app_id), snapshot.digest, started_at, offered,
                                     self._converged)
        return store_revision

    async def run(self) -> None:
        """Follow the store's change feed forever (cancel to stop)."""
        delay = 0.1
        while True:
            try:
                start = await self.push_all()  # also lists the live specs at start
                async for _ in self._store.changes(start):
                    await self.push_all()
                    delay = 0.1
            except StoreUnavailable as e:
                log_event(log, logging.WARNING, "change feed interrupted, retrying",
                          error=str(e), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            # A feed that ends without error: poll again shortly.
            await asyncio.sleep(delay)
