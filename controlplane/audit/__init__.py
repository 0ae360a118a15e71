"""The audit log: who changed which spec or breaker, when, and what it was before.

``open_audit_store(url, data_dir=...)`` follows the spec store's URL rules
(``fusebox.controlplane.spec_store.open_store``): the embedded default and ``sqlite://``
URLs put an ``audit_events`` table in the same SQLite file as the specs,
``memory://`` keeps events in memory, every Redis URL (``redis://``,
``rediss://``, ``redis+cluster://``, ``redis+sentinel://``; see
``fusebox.controlplane.redis_client``) uses the capped stream ``fusebox:{audit}:events``.
"""

from __future__ import annotations

from pathlib import Path

from fusebox.controlplane.audit.model import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    AuditAction,
    AuditEntry,
    AuditEvent,
    AuditQuery,
    AuditStore,
    AuditTargetKind,
)

__all__ = [
    "DEFAULT_LIST_LIMIT",
    "MAX_LIST_LIMIT",
    "AuditAction",
    "AuditEntry",
    "AuditEvent",
    "AuditQuery",
    "AuditStore",
    "AuditTargetKind",
    "open_audit_store",
]


def open_audit_store(url: str | None, *, data_dir: Path | None = None) -> AuditStore:
    """The audit store next to the spec store ``url`` names; no I/O.

    Raises ValueError for a URL ``open_store`` would refuse too.
    """
    from fusebox.controlplane.audit.embedded import MEMORY, EmbeddedAuditStore
    from fusebox.controlplane.spec_store import DATABASE_FILE_NAME, default_data_dir, open_store

    if not url:
        return EmbeddedAuditStore((data_dir or default_data_dir()) / DATABASE_FILE_NAME)
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "memory" and not rest:
        return EmbeddedAuditStore(MEMORY)
    if scheme == "sqlite" and rest.startswith("/") and rest.rstrip("/"):
        return EmbeddedAuditStore(Path(rest))
    from fusebox.controlplane.redis_client import REDIS_SCHEMES  # only now: it pulls in redis-py

    if scheme in REDIS_SCHEMES and rest and not rest.startswith("/"):
        from fusebox.controlplane.audit.redis import RedisAuditStore

        return RedisAuditStore(url)  # ValueError (password masked) for a malformed URL
    # Anything else: the spec store's parser gives the error message (and we
    # never get here for a URL it accepts).
    open_store(url, data_dir=data_dir)
    raise ValueError(f"audit store URL {url!r} is not supported")
