"""Validation errors on the wire: INVALID_ARGUMENT plus a SpecViolations detail.

The server packs every violation into the standard ``google.rpc.Status``
details (``grpc-status-details-bin``), so any gRPC client can decode them; the
human-readable status message lists them too, for clients that do not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status

from fusebox.controlplane.spec import Violation
from fusebox.v1 import spec_pb2

MAX_LISTED_IN_MESSAGE = 20


def violation_to_proto(v: Violation) -> spec_pb2.SpecViolation:
    return spec_pb2.SpecViolation(
        source=v.source, line=v.line, column=v.column, field_path=v.field_path, message=v.message
    )


def format_violation(v: spec_pb2.SpecViolation | Violation) -> str:
    """``FILE:LINE:COL: FIELD.PATH: MESSAGE`` (location parts omitted when unknown)."""
    where = v.source or "<input>"
    if v.line:
        where += f":{v.line}" + (f":{v.column}" if v.column else "")
    path = f" {v.field_path}:" if v.field_path else ""
    return f"{where}:{path} {v.message}"


def violations_status(violations: Sequence[Violation]) -> grpc.Status:
    """The status to abort an RPC with (``context.abort_with_status``)."""
    protos = [violation_to_proto(v) for v in violations]
    lines = [format_violation(p) for p in protos[:MAX_LISTED_IN_MESSAGE]]
    if len(protos) > MAX_LISTED_IN_MESSAGE:
        lines.append(f"... and {len(protos) - MAX_LISTED_IN_MESSAGE} more")
    detail = any_pb2.Any()
    detail.Pack(spec_pb2.SpecViolations(violations=protos))
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT,
        message=f"{len(protos)} validation error(s):\n" + "\n".join(lines),
        details=[detail],
    )
    return rpc_status.to_status(status)


def violations_from_rpc_error(err: grpc.RpcError) -> list[spec_pb2.SpecViolation]:
    """Decode the violations of an INVALID_ARGUMENT error ([] if there are none)."""
    status = rpc_status.from_call(err)
    if status is None:
        return []
    return list(_unpack(status.details))


def _unpack(details: Iterable[any_pb2.Any]) -> Iterable[spec_pb2.SpecViolation]:
    for detail in details:
        found = spec_pb2.SpecViolations()
        if detail.Unpack(found):  # False for details of another type
            yield from found.violations
