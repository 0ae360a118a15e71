"""The control plane's own enums and their ``fusebox.v1`` wire values, in one place.

The enums the agent shares (breaker state, override, transition cause,
target kind, direction, backoff, breaker scope) are mapped in
``fusebox.agent.wire_enums``; these are the ones only the server and the CLI
know. ``X_TO_PB`` maps each member onto its proto value, ``X_FROM_PB`` is the
inverse (read it with ``.get``: a newer server may send a value this CLI does
not know, and ``..._UNSPECIFIED`` is absent).

=====================  ================================================  =====================
table                  enum                                              proto enum
=====================  ================================================  =====================
``AUDIT_ACTION``       ``fusebox.controlplane.audit.AuditAction``        ``AuditAction``
``AUDIT_TARGET_KIND``  ``fusebox.controlplane.audit.AuditTargetKind``    ``AuditTargetKind``
``REVISION_ACTION``    ``fusebox.controlplane.spec_store.RevisionAction``  ``RevisionAction``
``SEVERITY``           ``fusebox.controlplane.spec.Severity``            ``ViolationSeverity``
=====================  ================================================  =====================
"""

from __future__ import annotations

from collections.abc import Mapping

from fusebox.controlplane.audit.model import AuditAction, AuditTargetKind
from fusebox.controlplane.spec import Severity
from fusebox.controlplane.spec_store.base import RevisionAction
from fusebox.v1 import audit_pb2, spec_pb2

__all__ = [
    "AUDIT_ACTION_FROM_PB",
    "AUDIT_ACTION_TO_PB",
    "AUDIT_TARGET_KIND_FROM_PB",
    "AUDIT_TARGET_KIND_TO_PB",
    "REVISION_ACTION_FROM_PB",
    "REVISION_ACTION_TO_PB",
    "SEVERITY_FROM_PB",
    "SEVERITY_TO_PB",
]

AUDIT_ACTION_TO_PB: Mapping[AuditAction, audit_pb2.AuditAction] = {
    AuditAction.SPEC_APPLY: audit_pb2.AUDIT_ACTION_SPEC_APPLY,
    AuditAction.SPEC_DELETE: audit_pb2.AUDIT_ACTION_SPEC_DELETE,
    AuditAction.SPEC_ROLLBACK: audit_pb2.AUDIT_ACTION_SPEC_ROLLBACK,
    AuditAction.BREAKER_OVERRIDE: audit_pb2.AUDIT_ACTION_BREAKER_OVERRIDE,
    AuditAction.BREAKER_RESET: audit_pb2.AUDIT_ACTION_BREAKER_RESET,
}
AUDIT_ACTION_FROM_PB = {wire: action for action, wire in AUDIT_ACTION_TO_PB.items()}

AUDIT_TARGET_KIND_TO_PB: Mapping[AuditTargetKind, audit_pb2.AuditTargetKind] = {
    AuditTargetKind.SPEC: audit_pb2.AUDIT_TARGET_KIND_SPEC,
    AuditTargetKind.BREAKER: audit_pb2.AUDIT_TARGET_KIND_BREAKER,
}
AUDIT_TARGET_KIND_FROM_PB = {wire: kind for kind, wire in AUDIT_TARGET_KIND_TO_PB.items()}

REVISION_ACTION_TO_PB: Mapping[RevisionAction, spec_pb2.RevisionAction] = {
    RevisionAction.APPLY: spec_pb2.REVISION_ACTION_APPLY,
    RevisionAction.DELETE: spec_pb2.REVISION_ACTION_DELETE,
    RevisionAction.ROLLBACK: spec_pb2.REVISION_ACTION_ROLLBACK,
}
REVISION_ACTION_FROM_PB = {wire: action for action, wire in REVISION_ACTION_TO_PB.items()}

SEVERITY_TO_PB: Mapping[Severity, spec_pb2.ViolationSeverity] = {
    Severity.ERROR: spec_pb2.VIOLATION_SEVERITY_ERROR,
    Severity.WARNING: spec_pb2.VIOLATION_SEVERITY_WARNING,
}
# UNSPECIFIED is an error: what every violation sent before severities existed was.
SEVERITY_FROM_PB: Mapping[spec_pb2.ViolationSeverity, Severity] = {
    spec_pb2.VIOLATION_SEVERITY_UNSPECIFIED: Severity.ERROR,
    **{pb: severity for severity, pb in SEVERITY_TO_PB.items()},
}
