"""``fusebox audit``: who changed which spec or breaker, when, and what it was before.

The command's flags, its client and its output live here; ``_parser`` only
calls ``add_audit_command``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from fusebox.controlplane.cli._connection import (
    DEFAULT_TIMEOUT_SECONDS,
    ClientSecurity,
    _ServiceClient,
    server_address,
)
from fusebox.controlplane.cli._errors import ExitCode
from fusebox.controlplane.cli._output import human_age, render_json, render_table
from fusebox.controlplane.spec import parse_duration
from fusebox.controlplane.wire_enums import AUDIT_ACTION_FROM_PB, AUDIT_TARGET_KIND_TO_PB
from fusebox.v1 import audit_pb2, audit_pb2_grpc

__all__ = ["AuditServiceClient", "add_audit_command", "audit_table", "event_to_json",
           "list_audit_events"]

KIND_CHOICES = {kind.value: wire for kind, wire in AUDIT_TARGET_KIND_TO_PB.items()}
MAX_LIMIT = 1000


class AuditServiceClient(_ServiceClient):
    """A client of ``fusebox.v1.AuditService``."""

    def __init__(
        self, address: str, timeout: float = DEFAULT_TIMEOUT_SECONDS,
        security: ClientSecurity | None = None,
    ) -> None:
        super().__init__(address, timeout, security=security)
        self._stub = audit_pb2_grpc.AuditServiceStub(self._channel)

    def list(
        self, request: audit_pb2.ListAuditEventsRequest
    ) -> audit_pb2.ListAuditEventsResponse:
        return self._invoke(self._stub.ListAuditEvents, request,
                            audit_pb2.ListAuditEventsResponse)


def _since(text: str) -> float:
    """``1h``/``30m`` ago, or an RFC 3339 time (``2024-05-01T12:00:00Z``): unix seconds."""
    try:
        return time.time() - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration (1h, 30m) or an RFC 3339 time (2024-05-01T12:00:00Z), "
            f"got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of events, got {text!r}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_LIMIT} events, got {value}")
    return value


def add_audit_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: argparse.ArgumentParser,
) -> None:
    audit = commands.add_parser(
        "audit", parents=[client],
        help="list who changed specs and breakers (newest first)",
    )
    audit.add_argument("-n", "--namespace", default="",
                       help="only changes in this namespace (default: every namespace)")
    audit.add_argument("--since", type=_since, metavar="DURATION|TIME",
                       help="only changes since this long ago (1h, 30m) or this RFC 3339 time")
    audit.add_argument("--limit", type=_limit, default=100, metavar="N",
                       help=f"at most N events (default: 100, at most {MAX_LIMIT})")
    audit.add_argument("--kind", choices=sorted(KIND_CHOICES),
                       help="only spec or only breaker changes")
    audit.add_argument("--target", default="", metavar="TEXT",
                       help="only targets whose name contains TEXT")
    audit.add_argument("-o", "--output", choices=("table", "json"), default="table",
                       help="output format (default: table)")
    audit.set_defaults(handler=list_audit_events)


def list_audit_events(args: argparse.Namespace) -> int:
    kind = KIND_CHOICES[args.kind] if args.kind else audit_pb2.AUDIT_TARGET_KIND_UNSPECIFIED
    request = audit_pb2.ListAuditEventsRequest(
        limit=args.limit, namespace=args.namespace, target_contains=args.target,
        target_kind=kind,
    )
    if args.since is not None:
        request.since.FromNanoseconds(int(args.since * 1e9))
    with AuditServiceClient(server_address(args.server), timeout=args.timeout,
                            security=ClientSecurity.from_args(args)) as client:
        events = list(client.list(request).events)
    if args.output == "json":
        print(render_json({"events": [event_to_json(e) for e in events]}))
    elif not events:
        print("no audit events found", file=sys.stderr)
    else:
        print(audit_table(events, now=time.time()))
    return ExitCode.OK


def action_name(action: audit_pb2.AuditAction) -> str:
    """``spec-apply``, ``breaker-override``…: the ``AuditAction``'s value."""
    found = AUDIT_ACTION_FROM_PB.get(action)
    return "unknown" if found is None else found.value


def _rfc3339(timestamp: Timestamp) -> str:
    return str(timestamp.ToJsonString())


def audit_table(events: list[audit_pb2.AuditEvent], now: float) -> str:
    rows = [
        [
            human_age(now - e.time.ToNanoseconds() / 1e9), e.actor, action_name(e.action),
            e.target, e.previous, e.current, e.detail,
        ]
        for e in events
    ]
    return render_table(["AGE", "ACTOR", "ACTION", "TARGET", "PREVIOUS", "CURRENT", "DETAIL"],
                        rows)


def event_to_json(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "time": _rfc3339(event.time),
        "actor": event.actor,
        "action": action_name(event.action),
        "namespace": event.namespace,
        "target": event.target,
        "targetKey": event.target_key,
        "previous": event.previous,
        "current": event.current,
        "detail": event.detail,
    }
