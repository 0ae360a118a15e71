"""Rendering for people (aligned tables, kubectl-style ages) and for machines.

Machine output (``-o json``) is stable: sorted keys, integers as numbers,
times as RFC 3339 strings. Every renderer takes the current time as a
parameter so the output is a pure function of its input.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from fusebox.controlplane.wire_enums import REVISION_ACTION_FROM_PB
from fusebox.v1 import spec_pb2

RESOURCE = "resiliency.dapr.io"
_COLUMN_GAP = "   "
SHORT_DIGEST_LENGTH = 12


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces, as kubectl prints them."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        _COLUMN_GAP.join(
            cell.ljust(width) for cell, width in zip(line, widths, strict=True)
        ).rstrip()
        for line in [list(headers), *rows]
    ]
    return "\n".join(lines)


def render_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def human_age(seconds: float) -> str:
    """kubectl's ``HumanDuration``: ``45s``, ``5m30s``, ``3h``, ``2d5h``, ``400d``, ``3y20d``."""
    if seconds < -1:
        return "<invalid>"
    total = max(0, int(seconds))
    minutes, hours, days = total // 60, total // 3600, total // 86400
    years = days // 365
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        rest = total % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        rest = days % 365
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{years}y"


def format_duration(seconds: float) -> str:
    """Go-style durations as written in specs: ``500ms``, ``5s``, ``1.5s``, ``1m30s``, ``1h``."""
    if seconds <= 0:
        return "0s"
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{millis}ms"
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if millis:
        parts.append(f"{millis / 1000:g}s")
    return "".join(parts)


def spec_ref(namespace: str, name: str) -> str:
    """``resiliency.dapr.io/NAME``, with the namespace when it is not ``default``."""
    shown = name if namespace in ("", "default") else f"{namespace}/{name}"
    return f"{RESOURCE}/{shown}"


def _age_since(timestamp: Timestamp, now: float) -> str:
    if not timestamp.seconds and not timestamp.nanos:
        return "<unknown>"
    return human_age(now - timestamp.ToNanoseconds() / 1e9)


def _rfc3339(timestamp: Timestamp) -> str | None:
    if not timestamp.seconds and not timestamp.nanos:
        return None
    return timestamp.ToJsonString()


def _plain(value: Any) -> Any:
    """Struct numbers are doubles on the wire; show ``1`` rather than ``1.0``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def struct_to_plain(struct: Struct) -> dict[str, Any]:
    plain = _plain(json_format.MessageToDict(struct))
    return plain if isinstance(plain, dict) else {}


# ---- specs ------------------------------------------------------------------

SPEC_HEADERS = ("NAMESPACE", "NAME", "REVISION", "AGE", "DIGEST")


def specs_table(specs: Sequence[spec_pb2.Spec], now: float) -> str:
    rows = [
        (
            s.namespace,
            s.name,
            str(s.revision),
            _age_since(s.update_time, now),
            s.digest[:SHORT_DIGEST_LENGTH],
        )
        for s in sorted(specs, key=lambda s: (s.namespace, s.name))
    ]
    return render_table(SPEC_HEADERS, rows)


def spec_to_json(spec: spec_pb2.Spec) -> dict[str, Any]:
    return {
        "namespace": spec.namespace,
        "name": spec.name,
        "revision": spec.revision,
        "digest": spec.digest,
        "updateTime": _rfc3339(spec.update_time),
        "document": struct_to_plain(spec.document),
        "yaml": spec.yaml,
    }


def specs_yaml(specs: Sequence[spec_pb2.Spec]) -> str:
    """The stored documents as applied, separated by ``---`` when there are several."""
    texts = [s.yaml if s.yaml.endswith("\n") else s.yaml + "\n" for s in specs]
    return "---\n".join(texts).rstrip("\n")


# ---- revisions ----------------------------------------------------------------

HISTORY_HEADERS = ("REVISION", "ACTION", "AGE", "DIGEST", "NOTE")


def action_name(action: spec_pb2.RevisionAction) -> str:
    found = REVISION_ACTION_FROM_PB.get(action)
    return "unknown" if found is None else found.value


def _revision_note(revision: spec_pb2.SpecRevision) -> str:
    if revision.action == spec_pb2.REVISION_ACTION_ROLLBACK and revision.rolled_back_to:
        return f"rolled back to revision {revision.rolled_back_to}"
    return ""


def history_table(revisions: Sequence[spec_pb2.SpecRevision], now: float) -> str:
    rows = [
        (
            str(r.revision),
            action_name(r.action),
            _age_since(r.create_time, now),
            r.digest[:SHORT_DIGEST_LENGTH] or "-",
            _revision_note(r),
        )
        for r in revisions
    ]
    return render_table(HISTORY_HEADERS, rows)


def history_to_json(
    namespace: str, name: str, revisions: Sequence[spec_pb2.SpecRevision]
) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "revisions": [
            {
                "revision": r.revision,
                "action": action_name(r.action),
                "createTime": _rfc3339(r.create_time),
                "digest": r.digest,
                "rolledBackTo": r.rolled_back_to,
                "yaml": r.yaml,
            }
            for r in revisions
        ],
    }


def applied_line(applied: spec_pb2.AppliedSpec, dry_run: bool) -> str:
    """``resiliency.dapr.io/NAME created|configured|unchanged (revision N | dry run)``."""
    if not applied.changed:
        verb = "unchanged"
    elif applied.revision <= 1:
        verb = "created"
    else:
        verb = "configured"
    suffix = "(dry run)" if dry_run else f"(revision {applied.revision})"
    return f"{spec_ref(applied.namespace, applied.name)} {verb} {suffix}"
