"""The store contract: what every spec store (embedded, Redis) guarantees.

- Revisions are per spec, start at 1, increase by one per write and are never
  reused, not even after a delete (a delete writes a tombstone revision).
- ``apply`` is atomic over all its writes: every expected revision is checked
  first and a mismatch raises ``RevisionConflict`` with nothing written.
- A write whose digest equals the live revision's digest is a no-op
  (``changed=False``, same revision).
- ``store_revision`` is a global counter bumped by every change; ``changes``
  yields new values of it, so server replicas sharing a store see each
  other's writes.
- ``control_plane_id`` is created once per store and never changes: every
  replica sharing the store, before and after restarts, reports the same one.
"""

from __future__ import annotations

import builtins
import enum
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fusebox.controlplane.store_errors import StoreError


class RevisionAction(enum.Enum):
    APPLY = "apply"
    DELETE = "delete"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class StoredSpec:
    namespace: str
    name: str
    revision: int
    yaml: str
    document: Mapping[str, Any]
    digest: str
    update_time: float  # unix seconds


@dataclass(frozen=True, slots=True)
class RevisionRecord:
    revision: int
    action: RevisionAction
    create_time: float  # unix seconds
    digest: str  # "" for deletions
    yaml: str  # "" for deletions
    document: Mapping[str, Any] | None  # None for deletions
    rolled_back_to: int = 0


@dataclass(frozen=True, slots=True)
class SpecWrite:
    namespace: str
    name: str
    yaml: str
    document: Mapping[str, Any]
    digest: str
    expected_revision: int | None = None  # None: unconditional; 0: must not exist
    action: RevisionAction = RevisionAction.APPLY
    rolled_back_to: int = 0


@dataclass(frozen=True, slots=True)
class WriteResult:
    namespace: str
    name: str
    revision: int
    changed: bool


class SpecNotFound(StoreError):
    def __init__(self, namespace: str, name: str, revision: int = 0) -> None:
        what = f"spec {namespace}/{name}" + (f" revision {revision}" if revision else "")
        super().__init__(f"{what} not found")
        self.namespace, self.name, self.revision = namespace, name, revision


class RevisionConflict(StoreError):
    def __init__(self, namespace: str, name: str, expected: int, actual: int) -> None:
        actual_text = "it does not exist" if actual == 0 else f"it is at revision {actual}"
        super().__init__(
            f"spec {namespace}/{name}: expected revision {expected} but {actual_text}"
        )
        self.namespace, self.name = namespace, name
        self.expected, self.actual = expected, actual


class SpecStore(Protocol):
    async def apply(self, writes: Sequence[SpecWrite]) -> list[WriteResult]: ...

    async def get(self, namespace: str, name: str, revision: int = 0) -> StoredSpec:
        """Live spec (revision 0) or one historical revision; SpecNotFound otherwise
        (a deleted spec is not found at revision 0)."""
        ...

    async def list(self, namespace: str | None = None) -> tuple[list[StoredSpec], int]:
        """Live specs sorted by (namespace, name), and the store revision."""
        ...

    async def delete(self, namespace: str, name: str, expected_revision: int | None = None) -> int:
        """Writes a tombstone; returns its revision. SpecNotFound if not live."""
        ...

    async def history(self, namespace: str, name: str) -> builtins.list[RevisionRecord]:
        """Every revision oldest first; SpecNotFound if the spec never existed."""
        ...

    async def store_revision(self) -> int: ...

    async def control_plane_id(self) -> str:
        """This control plane's identity (a UUID), created on first use, then persistent."""
        ...

    def changes(self, after: int) -> AsyncIterator[int]:
        """Yields the store revision each time it moves past ``after``
        (coalescing is allowed: one yield may cover several changes)."""
        ...

    async def ping(self) -> None:
        """Raises StoreUnavailable when the store cannot serve."""
        ...

    async def close(self) -> None: ...


def check_writes(writes: Sequence[SpecWrite]) -> None:
    """Rejects a batch no store accepts, before anything is read or written.

    A spec may appear once per ``apply`` (two writes to one spec in one atomic
    batch have no meaningful order), and deletions go through ``delete``, which
    has its own not-found rule.
    """
    seen: set[tuple[str, str]] = set()
    for write in writes:
        key = (write.namespace, write.name)
        if key in seen:
            raise ValueError(f"spec {write.namespace}/{write.name} appears twice in one apply")
        seen.add(key)
        if write.action is RevisionAction.DELETE:
            raise ValueError(
                f"spec {write.namespace}/{write.name}: apply does not delete; use delete()"
            )


def encode_json(value: Any) -> str:
    """Compact JSON for stored documents; read-only mappings are written as objects."""
    return json.dumps(value, separators=(",", ":"), default=_plain_mapping)


def _plain_mapping(value: object) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
