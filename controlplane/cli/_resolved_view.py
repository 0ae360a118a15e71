"""How ``fusebox resolve`` shows the policies one app-id gets.

Both paths (the ``ResolvePolicies`` RPC and the offline resolver over local
files) produce a ``fusebox.v1.ResolvedPolicies`` message, and only that
message is rendered here, so the two print exactly the same thing.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from fusebox.agent.wire_enums import DIRECTION_FROM_PB, TARGET_KIND_FROM_PB
from fusebox.controlplane.cli._breaker_view import kind_name, quorum_summary
from fusebox.controlplane.cli._output import format_duration, render_table
from fusebox.v1 import policy_pb2

RESOLVE_HEADERS = (
    "KIND",
    "TARGET",
    "DIRECTION",
    "TIMEOUT",
    "RETRY",
    "CIRCUIT-BREAKER",
    "FALLBACK",
    "SPEC",
)
#: Shown only when a target has one (Fusebox's fleet budgets; Dapr specs never do).
BUDGET_HEADERS = ("RATE-LIMIT", "RETRY-BUDGET")
_NONE = "-"


def _direction_name(direction: policy_pb2.ComponentDirection) -> str:
    found = DIRECTION_FROM_PB.get(direction)
    return _NONE if found is None else found.value


def target_label(target: policy_pb2.TargetPolicy) -> str:
    """The target's name, or ``(default app)`` / ``(default state component)`` for defaults."""
    if not target.is_default:
        return target.name
    found = TARGET_KIND_FROM_PB.get(target.kind)
    kind = "target" if found is None else found.value
    if target.component_type:
        return f"(default {target.component_type} {kind})"
    return f"(default {kind})"


def describe_timeout(target: policy_pb2.TargetPolicy) -> str:
    if not target.HasField("timeout"):
        return _NONE
    t = target.timeout
    seconds = t.duration.ToNanoseconds() / 1e9
    return f"{t.name} ({format_duration(seconds) if seconds > 0 else 'none'})"


def describe_retry(retry: policy_pb2.RetryPolicy) -> str:
    return f"{retry.name} ({retry_summary(retry)})"


def retry_summary(retry: policy_pb2.RetryPolicy) -> str:
    """``constant 5s, unlimited`` / ``exponential, max 60s, 3 retries``."""
    if retry.backoff == policy_pb2.BACKOFF_KIND_EXPONENTIAL:
        pace = f"exponential, max {format_duration(retry.max_interval.ToNanoseconds() / 1e9)}"
    else:
        pace = f"constant {format_duration(retry.duration.ToNanoseconds() / 1e9)}"
    if retry.max_retries < 0:
        limit = "unlimited"
    elif retry.max_retries == 1:
        limit = "1 retry"
    else:
        limit = f"{retry.max_retries} retries"
    return f"{pace}, {limit}"


def describe_breaker(target: policy_pb2.TargetPolicy) -> str:
    if not target.HasField("circuit_breaker"):
        return _NONE
    cb = target.circuit_breaker
    timeout = format_duration(cb.timeout.ToNanoseconds() / 1e9)
    quorum = f", quorum {quorum_summary(cb.quorum)}" if cb.HasField("quorum") else ""
    return f"{cb.name} ({cb.trip}, open {timeout}, {cb.max_requests} probe(s){quorum})"


def describe_fallback(target: policy_pb2.TargetPolicy) -> str:
    if not target.HasField("fallback"):
        return _NONE
    fb = target.fallback
    if fb.WhichOneof("action") == "function":
        return f"{fb.name} (function {fb.function})"
    if fb.WhichOneof("action") == "response":
        return f"{fb.name} (status {fb.response.status})"
    return fb.name


def describe_rate_limit(target: policy_pb2.TargetPolicy) -> str:
    """``ordersLimit (200 per 1s, burst 50, app, reject)``."""
    if not target.HasField("rate_limit"):
        return _NONE
    rl = target.rate_limit
    period = format_duration(rl.period.ToNanoseconds() / 1e9)
    scope = "fleet" if rl.scope == policy_pb2.RATE_LIMIT_SCOPE_FLEET else "app"
    if rl.when_exceeded == policy_pb2.WHEN_EXCEEDED_WAIT:
        exceeded = f"wait {format_duration(rl.max_wait.ToNanoseconds() / 1e9)}"
    else:
        exceeded = "reject"
    return f"{rl.name} ({rl.limit} per {period}, burst {rl.burst}, {scope}, {exceeded})"


def describe_retry_budget(target: policy_pb2.TargetPolicy) -> str:
    """``ordersRetries (20% over 10s, floor 10/s)``."""
    if not target.HasField("retry_budget"):
        return _NONE
    rb = target.retry_budget
    window = format_duration(rb.window.ToNanoseconds() / 1e9)
    return (f"{rb.name} ({rb.ratio:.0%} over {window}, "
            f"floor {rb.min_retries_per_second:g}/s)")


def _has_budgets(policies: policy_pb2.ResolvedPolicies) -> bool:
    return any(t.HasField("rate_limit") or t.HasField("retry_budget")
               for t in policies.targets)


def resolved_rows(policies: policy_pb2.ResolvedPolicies) -> list[tuple[str, ...]]:
    budgets = _has_budgets(policies)
    return [
        (
            kind_name(t.kind),
            target_label(t),
            _direction_name(t.direction),
            describe_timeout(t),
            describe_retry(t.retry) if t.HasField("retry") else _NONE,
            describe_breaker(t),
            describe_fallback(t),
            *((describe_rate_limit(t), describe_retry_budget(t)) if budgets else ()),
            f"{t.spec_namespace}/{t.spec_name}" if t.spec_name else _NONE,
        )
        for t in policies.targets
    ]


def resolved_table(policies: policy_pb2.ResolvedPolicies) -> str:
    """One row per target; built-in retries (when present) are listed under the table.

    Built-in retries apply to every app, so they are shown even when no target does.
    """
    lines: list[str] = []
    if policies.targets:
        headers: tuple[str, ...] = RESOLVE_HEADERS
        if _has_budgets(policies):
            headers = (*RESOLVE_HEADERS[:-1], *BUDGET_HEADERS, RESOLVE_HEADERS[-1])
        lines.append(render_table(headers, resolved_rows(policies)))
    else:
        lines.append(
            f'no policies apply to app "{policies.app_id}" in namespace "{policies.namespace}"'
        )
    if policies.builtin_retries:
        lines.append("")
        lines.append("built-in retries (Dapr's defaults unless a spec overrides them):")
        for name in sorted(policies.builtin_retries):
            lines.append(f"  {name}: {retry_summary(policies.builtin_retries[name])}")
    return "\n".join(lines)


def resolved_to_json(policies: policy_pb2.ResolvedPolicies) -> dict[str, Any]:
    """The proto3 JSON mapping of the message (durations as ``"5s"``)."""
    return json_format.MessageToDict(policies)
