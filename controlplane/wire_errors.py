"""Spec violations on the wire: errors refuse a request, warnings ride along.

On a refusal the server sends INVALID_ARGUMENT and packs every violation
(the errors, then the warnings found beside them) into the standard
``google.rpc.Status`` details (``grpc-status-details-bin``) as a
``SpecViolations``, so any gRPC client can decode them; the human-readable
status message lists the errors too, for clients that do not. An accepted
apply returns its warnings in ``ApplySpecResponse.warnings``.

Every violation prints the same way, in the CLI and in logs:
``FILE:LINE:COL: FIELD.PATH: MESSAGE``, with ``warning: `` before the message
of a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from fusebox.controlplane.spec import Severity, Violation
from fusebox.controlplane.wire_enums import SEVERITY_FROM_PB, SEVERITY_TO_PB
from fusebox.v1 import spec_pb2

MAX_LISTED_IN_MESSAGE = 20



def violation_to_proto(v: Violation) -> spec_pb2.SpecViolation:
    return spec_pb2.SpecViolation(
        source=v.source, line=v.line, column=v.column, field_path=v.field_path, message=v.message,
        severity=SEVERITY_TO_PB[v.severity],
    )


def violation_from_proto(p: spec_pb2.SpecViolation) -> Violation:
    return Violation(
        p.source, p.line, p.column, p.field_path, p.message,
        SEVERITY_FROM_PB.get(p.severity, Severity.ERROR),
    )


def format_violation(v: spec_pb2.SpecViolation | Violation) -> str:
    """``FILE:LINE:COL: FIELD.PATH: [warning: ]MESSAGE`` (location parts omitted when unknown)."""
    if isinstance(v, spec_pb2.SpecViolation):
        v = violation_from_proto(v)
    where = v.source or "<input>"
    if v.line:
        where += f":{v.line}" + (f":{v.column}" if v.column else "")
    path = f" {v.field_path}:" if v.field_path else ""
    label = " warning:" if v.is_warning else ""
    return f"{where}:{path}{label} {v.message}"


def violations_status(
    violations: Sequence[Violation], warnings: Sequence[Violation] = ()
) -> grpc.Status:
    """The status to abort an RPC with (``context.abort_with_status``): the
    errors in ``violations``, and the ``warnings`` found beside them."""
    errors = [violation_to_proto(v) for v in violations]
    lines = [format_violation(p) for p in errors[:MAX_LISTED_IN_MESSAGE]]
    if len(errors) > MAX_LISTED_IN_MESSAGE:
        lines.append(f"... and {len(errors) - MAX_LISTED_IN_MESSAGE} more")
    detail = any_pb2.Any()
    detail.Pack(
        spec_pb2.SpecViolations(violations=[*errors, *(violation_to_proto(w) for w in warnings)])
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=f"{len(errors)} validation error(s):\n" + "\n".join(lines),
        details=[detail],
    )
    return rpc_status.to_status(status)


def violations_from_rpc_error(err: grpc.RpcError) -> list[spec_pb2.SpecViolation]:
    """Decode the violations of an INVALID_ARGUMENT error ([] if there are none):
    the errors, then the warnings (each says which it is in ``severity``)."""
    status = rpc_status.from_call(err)
    if status is None:
        return []
    return list(_unpack(status.details))


def _unpack(details: Iterable[any_pb2.Any]) -> Iterable[spec_pb2.SpecViolation]:
    for detail in details:
        found = spec_pb2.SpecViolations()
        if detail.Unpack(found):  # False for details of another type
            yield from found.violations
