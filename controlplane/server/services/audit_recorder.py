"""Turning spec and breaker changes into audit entries, and writing them safely.

The RPC handlers call these after a change succeeded. An audit store that
fails at that point does not fail the RPC: the change is already made, and an
error would make the client retry a change that happened. The failure is
logged at ERROR with the whole entry instead, so it is not lost.
"""

from __future__ import annotations

import logging

from fusebox.agent.breaker_key import BreakerKey
from fusebox.controlplane.audit.model import AuditAction, AuditEntry, AuditStore, AuditTargetKind
from fusebox.controlplane.breakers.model import BreakerSnapshot, BreakerTarget, TargetOverride
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.store_errors import StoreUnavailable

__all__ = [
    "AuditRecorder",
    "breaker_entry",
    "describe_breaker",
    "describe_spec",
    "describe_target_override",
    "spec_entry",
    "target_override_entry",
]

log = logging.getLogger("fusebox.server.audit")


def describe_spec(revision: int, digest: str) -> str:
    """``"revision 3 (sha256:ab12cd34ef56)"``, or ``"none"`` for no live spec."""
    if revision <= 0:
        return "none"
    short = digest[:19] if digest.startswith("sha256:") else f"sha256:{digest[:12]}"
    return f"revision {revision} ({short})" if digest else f"revision {revision} (deleted)"


def describe_breaker(snapshot: BreakerSnapshot | None) -> str:
    """``"state open, override force-open until 12:00:00Z by alice"`` in short form."""
    if snapshot is None:
        return "none"
    text = f"state {snapshot.state.value}, generation {snapshot.generation}"
    override = snapshot.override
    if override is None:
        return f"{text}, no override"
    text = f"{text}, override {override.override.value}"
    if override.reason:
        text += f" ({override.reason})"
    return text


def describe_target_override(rule: TargetOverride | None) -> str:
    """``"override force-open (maintenance) on every breaker"``, or ``"none"``."""
    if rule is None:
        return "none"
    reason = f" ({rule.info.reason})" if rule.info.reason else ""
    return f"override {rule.info.override.value}{reason} on every breaker"


def spec_entry(
    actor: str, action: AuditAction, namespace: str, name: str, previous: str, current: str,
    detail: str = "",
) -> AuditEntry:
    target = f"{namespace}/{name}"
    return AuditEntry(
        actor=actor, action=action, target_kind=AuditTargetKind.SPEC, namespace=namespace,
        target=target, target_key=target, previous=previous, current=current, detail=detail,
    )


def breaker_entry(
    actor: str, action: AuditAction, key: BreakerKey, previous: BreakerSnapshot | None,
    current: BreakerSnapshot | None, detail: str = "",
) -> AuditEntry:
    return AuditEntry(
        actor=actor, action=action, target_kind=AuditTargetKind.BREAKER,
        namespace=key.namespace, target=key.display_name, target_key=key.encode(),
        previous=describe_breaker(previous), current=describe_breaker(current), detail=detail,
    )


def target_override_entry(
    actor: str, target: BreakerTarget, previous: TargetOverride | None,
    current: TargetOverride | None, detail: str = "",
) -> AuditEntry:
    """A ``breaker-override`` of every breaker of a target (``order-processor:*``)."""
    return AuditEntry(
        actor=actor, action=AuditAction.BREAKER_OVERRIDE, target_kind=AuditTargetKind.BREAKER,
        namespace=target.namespace, target=target.display_name, target_key=target.encode(),
        previous=describe_target_override(previous), current=describe_target_override(current),
        detail=detail,
    )


class AuditRecorder:
    """Writes entries to an audit store (or nowhere, when built with ``None``)."""

    def __init__(self, store: AuditStore | None) -> None:
        self.store = store

    async def record(self, entry: AuditEntry) -> None:
        log_event(log, logging.INFO, "audit", actor=entry.actor, action=entry.action.value,
                  target=entry.target, previous=entry.previous, current=entry.current,
                  detail=entry.detail)
        if self.store is None:
            return
        try:
            await self.store.record(entry)
        except StoreUnavailable as e:
            log_event(log, logging.ERROR, "audit event not stored", error=str(e),
                      actor=entry.actor, action=entry.action.value, target=entry.target,
                      previous=entry.previous, current=entry.current, detail=entry.detail)
