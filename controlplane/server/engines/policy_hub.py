"""Resolved policies per connected (namespace, app-id), kept fresh.

The hub follows the store's change feed (so writes through any server replica
sharing the store are seen), re-resolves the policies of every app that has
agents connected here, and offers a new snapshot to the sessions whose policy
digest changed. Parsed specs are cached by digest: a change re-parses only
the documents that changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator

from fusebox.agent.policy import resolved_to_proto
from fusebox.controlplane.resolve import resolve_policies
from fusebox.controlplane.server.engines.sessions import AgentSession, AppKey, PreparedSnapshot
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.spec import SpecValidationError, parse_document_mapping
from fusebox.controlplane.spec.model import ResiliencySpec
from fusebox.controlplane.spec_store.base import SpecStore, StoredSpec
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import policy_pb2

log = logging.getLogger("fusebox.server.policies")

class PolicyHub:
    def __init__(self, store: SpecStore) -> None:
        self._store = store
        self._control_plane_id = ""  # the store's, once read
        self._sessions: dict[AppKey, set[AgentSession]] = defaultdict(set)
        self._parsed: dict[str, ResiliencySpec | None] = {}

    # -- sessions ------------------------------------------------------------

    def register(self, session: AgentSession) -> None:
        self._sessions[session.app].add(session)

    def unregister(self, session: AgentSession) -> None:
        sessions = self._sessions.get(session.app)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._sessions[session.app]

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
        policies, store_revision = await self.resolve(namespace, app_id)
        return PreparedSnapshot.build(policies, store_revision, await self.control_plane_id())

    async def push_all(self) -> int:
        """Re-resolve every connected app and offer changed snapshots."""
        if not self._sessions:
            return await self._store.store_revision()
        stored, store_revision = await self._store.list(None)
        live_digests = {s.digest for s in stored}
        for digest in [d for d in self._parsed if d not in live_digests]:
            del self._parsed[digest]
        control_plane_id = await self.control_plane_id()
        by_namespace: dict[str, list[StoredSpec]] = defaultdict(list)
        for s in stored:
            by_namespace[s.namespace].append(s)
        for (namespace, app_id), sessions in list(self._sessions.items()):
            resolved = resolved_to_proto(
                resolve_policies(self._specs(by_namespace[namespace]), namespace, app_id)
            )
            snapshot = PreparedSnapshot.build(resolved, store_revision, control_plane_id)
            for session in list(sessions):
                session.offer_snapshot(snapshot)
        return store_revision

    async def run(self) -> None:
        """Follow the store's change feed forever (cancel to stop)."""
        delay = 0.1
        while True:
            try:
                start = await self._store.store_revision()
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
