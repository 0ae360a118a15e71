"""How the ``fusebox breakers`` commands show circuit breakers.

Every renderer takes the current time as a parameter, so the output is a pure
function of its input. JSON output (``-o json``, and one line per event in
``watch``) uses the same breaker object everywhere, keys sorted, camelCase as
the rest of the CLI's JSON, times as RFC 3339 strings, durations as Go
durations (``"5s"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.wire_enums import (
    CAUSE_FROM_PB,
    OVERRIDE_FROM_PB,
    STATE_FROM_PB,
    TARGET_KIND_FROM_PB,
)
from fusebox.controlplane.cli._output import format_duration, human_age, render_table
from fusebox.v1 import breaker_pb2, policy_pb2

NONE = "-"

def kind_name(kind: policy_pb2.TargetKind) -> str:
    found = TARGET_KIND_FROM_PB.get(kind)
    return "unknown" if found is None else found.value


def state_name(state: breaker_pb2.BreakerState) -> str:
    found = STATE_FROM_PB.get(state)
    return "unknown" if found is None else found.value


def override_name(override: breaker_pb2.BreakerOverride) -> str:
    found = OVERRIDE_FROM_PB.get(override)
    return "none" if found is None else found.value


def cause_name(cause: breaker_pb2.TransitionCause) -> str:
    """The cause's value with hyphens (``probe-success``), as the CLI writes every word
    of more than one part (``half-open``, ``force-open``)."""
    found = CAUSE_FROM_PB.get(cause)
    return "unknown" if found is None else found.value.replace("_", "-")


def key_path(key: policy_pb2.BreakerKey) -> str:
    """The full reference: ``NAMESPACE/SPEC/KIND/TARGET[/METHOD]`` (``str(BreakerKey)``).

    >>> key_path(policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
    ...     kind=policy_pb2.TARGET_KIND_APP, target="order-processor", method="orders"))
    'default/myresiliency/app/order-processor/orders'
    """
    known = BreakerKey.try_from_proto(key)
    if known is not None:
        return str(known)
    method = f"/{key.method}" if key.method else ""  # a kind unknown here (a newer server)
    return f"{key.namespace}/{key.spec}/{kind_name(key.kind)}/{key.target}{method}"


def shown_name(breaker: breaker_pb2.Breaker) -> str:
    """The display name as Dapr prints it, or the full key when the server sent none."""
    return breaker.display_name or key_path(breaker.key)


def _is_set(timestamp: Timestamp) -> bool:
    return bool(timestamp.seconds or timestamp.nanos)


def _seconds(timestamp: Timestamp) -> float:
    return timestamp.ToNanoseconds() / 1e9


def _rfc3339(timestamp: Timestamp) -> str | None:
    return timestamp.ToJsonString() if _is_set(timestamp) else None


def _duration_text(duration: Duration) -> str:
    return format_duration(duration.ToNanoseconds() / 1e9)


def quorum_summary(quorum: policy_pb2.BreakerQuorum) -> str:
    """A quorum's rules: ``2 instances``, ``50% of reporting``, or both joined by ``and``.

    >>> quorum_summary(policy_pb2.BreakerQuorum(min_instances=2, min_share=0.5))
    '2 instances and 50% of reporting'
    """
    rules = []
    if quorum.min_instances:
        noun = "instance" if quorum.min_instances == 1 else "instances"
        rules.append(f"{quorum.min_instances} {noun}")
    if quorum.min_share:
        rules.append(f"{quorum.min_share * 100:g}% of reporting")
    return " and ".join(rules) or "none"


def failing_instances_text(breaker: breaker_pb2.Breaker) -> str:
    """``a, b (2 of 4 reporting; quorum 2 instances)``: the window of a quorum breaker.

    Names beyond those the server sent are counted: ``a, b and 98 more (...)``.
    """
    names = ", ".join(breaker.failing_instances) or "none"
    hidden = breaker.failing_instance_count - len(breaker.failing_instances)
    if hidden > 0:
        names += f" and {hidden} more"
    return (
        f"{names} ({breaker.failing_instance_count} of {breaker.reporting_instance_count} "
        f"reporting; quorum {quorum_summary(breaker.policy.quorum)})"
    )


def counts_summary(counts: breaker_pb2.BreakerCounts) -> str:
    """``requests/failures/consecutive failures``, e.g. ``12/5/5``."""
    return f"{counts.requests}/{counts.total_failures}/{counts.consecutive_failures}"


def _has_override(breaker: breaker_pb2.Breaker) -> bool:
    return breaker.HasField("override") and (
        breaker.override.override != breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED
    )


def open_until_text(breaker: breaker_pb2.Breaker, now: float) -> str:
    """How long an open breaker stays open (``4s``); ``-`` when it is not waiting to probe."""
    if breaker.state != breaker_pb2.BREAKER_STATE_OPEN or not _is_set(breaker.open_until):
        return NONE
    return human_age(max(0.0, _seconds(breaker.open_until) - now))


def state_age_text(breaker: breaker_pb2.Breaker, now: float) -> str:
    """Time since the last transition (how long it has been in its state); ``-`` if unknown."""
    if not breaker.recent_transitions or not _is_set(breaker.recent_transitions[-1].time):
        return NONE
    return human_age(now - _seconds(breaker.recent_transitions[-1].time))


# ---- list -----------------------------------------------------------------------

BREAKER_HEADERS = (
    "NAMESPACE",
    "SPEC",
    "KIND",
    "NAME",
    "STATE",
    "OVERRIDE",
    "GEN",
    "COUNTS",
    "OPEN-UNTIL",
    "AGE",
)


def sort_key(breaker: breaker_pb2.Breaker) -> tuple[str, str, str, str]:
    return (
        breaker.key.namespace,
        breaker.key.spec,
        kind_name(breaker.key.kind),
        key_path(breaker.key),
    )


def breaker_row(breaker: breaker_pb2.Breaker, now: float) -> tuple[str, ...]:
    return (
        breaker.key.namespace,
        breaker.key.spec,
        kind_name(breaker.key.kind),
        shown_name(breaker),
        state_name(breaker.state),
        override_name(breaker.override.override) if _has_override(breaker) else NONE,
        str(breaker.generation),
        counts_summary(breaker.counts),
        open_until_text(breaker, now),
        state_age_text(breaker, now),
    )


def breakers_table(breakers: Sequence[breaker_pb2.Breaker], now: float) -> str:
    """One row per breaker, sorted by namespace, spec, kind and key.

    COUNTS is ``requests/failures/consecutive failures``; AGE is the time since
    the last transition.
    """
    rows = [breaker_row(b, now) for b in sorted(breakers, key=sort_key)]
    return render_table(BREAKER_HEADERS, rows)


# ---- JSON -----------------------------------------------------------------------


def key_to_json(key: policy_pb2.BreakerKey) -> dict[str, Any]:
    return {
        "namespace": key.namespace,
        "spec": key.spec,
        "kind": kind_name(key.kind),
        "target": key.target,
        "method": key.method,
    }


def transition_to_json(transition: breaker_pb2.BreakerTransition) -> dict[str, Any]:
    return {
        "from": state_name(transition.from_state),
        "to": state_name(transition.to_state),
        "cause": cause_name(transition.cause),
        "time": _rfc3339(transition.time),
        "generation": transition.generation,
        "instanceId": transition.instance_id,
        "detail": transition.detail,
    }


def _override_to_json(breaker: breaker_pb2.Breaker) -> dict[str, Any] | None:
    if not _has_override(breaker):
        return None
    return override_info_to_json(breaker.override)


def override_info_to_json(info: breaker_pb2.OverrideInfo) -> dict[str, Any]:
    return {
        "override": override_name(info.override),
        "reason": info.reason,
        "expireTime": _rfc3339(info.expire_time),
        "setBy": info.set_by,
    }


def _policy_to_json(breaker: breaker_pb2.Breaker) -> dict[str, Any] | None:
    if not breaker.HasField("policy"):
        return None
    policy = breaker.policy
    quorum = None
    if policy.HasField("quorum"):
        quorum = {
            "minInstances": policy.quorum.min_instances,
            "minShare": policy.quorum.min_share,
        }
    return {
        "name": policy.name,
        "maxRequests": policy.max_requests,
        "interval": _duration_text(policy.interval),
        "timeout": _duration_text(policy.timeout),
        "trip": policy.trip,
        "quorum": quorum,
    }


def breaker_to_json(breaker: breaker_pb2.Breaker) -> dict[str, Any]:
    """The breaker object of every JSON output (``list``, ``get``, ``watch``, overrides)."""
    counts = breaker.counts
    return {
        "name": key_path(breaker.key),
        "displayName": breaker.display_name,
        "key": key_to_json(breaker.key),
        "state": state_name(breaker.state),
        "generation": breaker.generation,
        "counts": {
            "requests": counts.requests,
            "totalSuccesses": counts.total_successes,
            "totalFailures": counts.total_failures,
            "consecutiveSuccesses": counts.consecutive_successes,
            "consecutiveFailures": counts.consecutive_failures,
        },
        "openUntil": _rfc3339(breaker.open_until),
        "override": _override_to_json(breaker),
        "policy": _policy_to_json(breaker),
        "activeLeases": breaker.active_leases,
        "failingInstances": list(breaker.failing_instances),
        "failingInstanceCount": breaker.failing_instance_count,
        "reportingInstanceCount": breaker.reporting_instance_count,
        "recentTransitions": [transition_to_json(t) for t in breaker.recent_transitions],
    }


def event_to_json(event: breaker_pb2.WatchBreakersResponse) -> dict[str, Any]:
    """One ``watch`` line: ``revision``, ``snapshot``, ``breaker`` and ``transition`` (or null)."""
    return {
        "revision": event.revision,
        "snapshot": event.snapshot,
        "breaker": breaker_to_json(event.breaker),
        "transition": (
            transition_to_json(event.transition) if event.HasField("transition") else None
        ),
    }


# ---- target overrides (--all-methods) ------------------------------------------------

TARGET_OVERRIDE_HEADERS = ("TARGET", "OVERRIDE", "REASON", "SET-BY", "EXPIRES")
TARGET_OVERRIDES_TITLE = "overrides on every method (--all-methods):"


def target_path(key: policy_pb2.BreakerKey) -> str:
    """``NAMESPACE/SPEC/KIND/TARGET``: a target as ``--all-methods`` takes it."""
    return f"{key.namespace}/{key.spec}/{kind_name(key.kind)}/{key.target}"


def target_text(key: policy_pb2.BreakerKey) -> str:
    """``app "order-processor" (spec default/myresiliency)``."""
    return f'{kind_name(key.kind)} "{key.target}" (spec {key.namespace}/{key.spec})'


def target_override_to_json(rule: breaker_pb2.TargetOverride) -> dict[str, Any]:
    return {
        "name": target_path(rule.target),
        "key": key_to_json(rule.target),
        "override": override_info_to_json(rule.override),
    }


def target_overrides_table(rules: Sequence[breaker_pb2.TargetOverride], now: float) -> str:
    """One row per target override, by target; EXPIRES is ``in 1h58m`` or ``-`` (until cleared)."""
    rows = [
        (
            target_path(rule.target),
            override_name(rule.override.override),
            rule.override.reason or NONE,
            rule.override.set_by or NONE,
            f"in {human_age(max(0.0, _seconds(rule.override.expire_time) - now))}"
            if _is_set(rule.override.expire_time) else NONE,
        )
        for rule in sorted(rules, key=lambda r: target_path(r.target))
    ]
    return render_table(TARGET_OVERRIDE_HEADERS, rows)


# ---- get ------------------------------------------------------------------------

TRANSITION_HEADERS = ("AGE", "FROM", "TO", "CAUSE", "GEN", "INSTANCE", "DETAIL")


def _when(timestamp: Timestamp, now: float) -> str:
    """``2024-05-01T12:00:00Z (in 4s)`` / ``(3m ago)``."""
    delta = _seconds(timestamp) - now
    relative = f"in {human_age(delta)}" if delta >= 0 else f"{human_age(-delta)} ago"
    return f"{timestamp.ToJsonString()} ({relative})"


def _override_text(breaker: breaker_pb2.Breaker, now: float) -> str:
    if not _has_override(breaker):
        return "none"
    info = breaker.override
    parts = [override_name(info.override)]
    if info.reason:
        parts.append(f'reason "{info.reason}"')
    if info.set_by:
        parts.append(f"set by {info.set_by}")
    parts.append(
        f"expires {_when(info.expire_time, now)}" if _is_set(info.expire_time) else "until cleared"
    )
    return ", ".join(parts)


def _policy_text(breaker: breaker_pb2.Breaker) -> str:
    if not breaker.HasField("policy"):
        return "unknown"
    p = breaker.policy
    interval = p.interval.ToNanoseconds()
    window = (
        f"counts reset every {_duration_text(p.interval)}"
        if interval > 0
        else ("counts never reset while closed")
    )
    quorum = f", quorum {quorum_summary(p.quorum)}" if p.HasField("quorum") else ""
    return (
        f"{p.name} (trip {p.trip}, open {_duration_text(p.timeout)}, "
        f"{p.max_requests} probe(s), {window}{quorum})"
    )


def transitions_table(transitions: Sequence[breaker_pb2.BreakerTransition], now: float) -> str:
    rows = [
        (
            human_age(now - _seconds(t.time)) if _is_set(t.time) else NONE,
            state_name(t.from_state),
            state_name(t.to_state),
            cause_name(t.cause),
            str(t.generation),
            t.instance_id or NONE,
            t.detail or NONE,
        )
        for t in transitions
    ]
    return render_table(TRANSITION_HEADERS, rows)


def breaker_details(breaker: breaker_pb2.Breaker, now: float) -> str:
    """``fusebox breakers get``: one field per line, then the recent transitions."""
    counts = breaker.counts
    open_until = _when(breaker.open_until, now) if _is_set(breaker.open_until) else NONE
    fields = [
        ("Name", shown_name(breaker)),
        ("Key", key_path(breaker.key)),
        ("State", state_name(breaker.state)),
        ("Generation", str(breaker.generation)),
        (
            "Counts",
            f"{counts.requests} requests, {counts.total_successes} successes "
            f"({counts.consecutive_successes} consecutive), {counts.total_failures} failures "
            f"({counts.consecutive_failures} consecutive)",
        ),
        ("Open until", open_until),
        ("Probe leases", str(breaker.active_leases)),
        ("Override", _override_text(breaker, now)),
        ("Policy", _policy_text(breaker)),
    ]
    if breaker.policy.HasField("quorum"):
        fields.append(("Failing instances", failing_instances_text(breaker)))
    width = max(len(label) for label, _ in fields) + 2
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]
    lines.append("")
    if breaker.recent_transitions:
        lines.append("Recent transitions (oldest first):")
        lines.append(transitions_table(breaker.recent_transitions, now))
    else:
        lines.append("Recent transitions: none")
    return "\n".join(lines)
