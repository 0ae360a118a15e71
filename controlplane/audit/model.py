"""What an audit event is, how it is queried, and the contract of audit stores.

Stores append events and list them newest first; they never update or delete
one (the Redis stream is capped, the oldest events fall off first).
"""

from __future__ import annotations

import builtins
import enum
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "MAX_LIST_LIMIT",
    "AuditAction",
    "AuditEntry",
    "AuditEvent",
    "AuditQuery",
    "AuditStore",
    "AuditTargetKind",
]

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000


class AuditAction(enum.Enum):
    SPEC_APPLY = "spec-apply"
    SPEC_DELETE = "spec-delete"
    SPEC_ROLLBACK = "spec-rollback"
    BREAKER_OVERRIDE = "breaker-override"
    BREAKER_RESET = "breaker-reset"


class AuditTargetKind(enum.Enum):
    SPEC = "spec"
    BREAKER = "breaker"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to record: who did what to which target, before and after.

    ``previous`` and ``current`` are short human-readable descriptions
    (``"revision 3 (sha256:ab12…)"``, ``"none"``), not structured values: the
    audit log is read by people, and the store keeps the full history anyway.
    """

    actor: str
    action: AuditAction
    target_kind: AuditTargetKind
    namespace: str
    target: str  # specs: "namespace/name"; breakers: the display name
    target_key: str  # breakers: the encoded id; specs: same as target
    previous: str
    current: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """A recorded entry: the entry plus the store's id and the time it was recorded."""

    id: str
    time: float  # unix seconds
    entry: AuditEntry


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of ``AuditStore.list``; empty values match everything."""

    since: float | None = None  # unix seconds, inclusive
    limit: int = DEFAULT_LIST_LIMIT
    target_kind: AuditTargetKind | None = None
    namespace: str = ""
    target_contains: str = ""
    actions: frozenset[AuditAction] = field(default_factory=frozenset)

    def matches(self, event: AuditEvent) -> bool:
        e = event.entry
        return (
            (self.since is None or event.time >= self.since)
            and (self.target_kind is None or e.target_kind is self.target_kind)
            and (not self.namespace or e.namespace == self.namespace)
            and (not self.target_contains
                 or self.target_contains in e.target or self.target_contains in e.target_key)
            and (not self.actions or e.action in self.actions)
        )


class AuditStore(Protocol):
    async def record(self, entry: AuditEntry) -> AuditEvent:
        """Append one entry; ``StoreUnavailable`` when the store cannot be written."""
        ...

    async def list(self, query: AuditQuery) -> builtins.list[AuditEvent]:
        """Events matching ``query``, newest first, at most ``query.limit``."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def clamp_limit(limit: int) -> int:
    """The number of events a list returns for a requested ``limit`` (0 = default)."""
    if limit <= 0:
        return DEFAULT_LIST_LIMIT
    return min(limit, MAX_LIST_LIMIT)

