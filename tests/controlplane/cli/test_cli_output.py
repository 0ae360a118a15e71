"""What the CLI prints: tables for people, stable JSON for machines."""

from __future__ import annotations

import json

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from fusebox.controlplane.cli._output import (
    applied_line,
    format_duration,
    history_table,
    history_to_json,
    human_age,
    render_json,
    render_table,
    spec_to_json,
    specs_table,
    specs_yaml,
)
from fusebox.controlplane.cli._resolved_view import resolved_rows, resolved_table, resolved_to_json
from fusebox.v1 import policy_pb2, spec_pb2

NOW = 1_700_000_000.0


def spec(name: str, revision: int, age_seconds: int, namespace: str = "default") -> spec_pb2.Spec:
    document = Struct()
    document.update({"kind": "Resiliency", "spec": {"policies": {"cb": {"maxRequests": 1}}}})
    return spec_pb2.Spec(
        namespace=namespace,
        name=name,
        revision=revision,
        yaml=f"kind: Resiliency\nmetadata:\n  name: {name}\n",
        document=document,
        update_time=Timestamp(seconds=int(NOW) - age_seconds),
        digest="0123456789abcdef" * 4,
    )


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (330, "5m30s"),
        (45 * 60, "45m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 20 * 60, "3h20m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 5 * 3600, "3d5h"),
        (20 * 86400, "20d"),
        (3 * 365 * 86400 + 20 * 86400, "3y20d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_ages_read_like_kubectl(seconds: int, shown: str) -> None:
    assert human_age(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (0.5, "500ms"), (5, "5s"), (1.5, "1.5s"), (90, "1m30s"), (3600, "1h"), (60, "1m")],
)
def test_durations_read_like_the_spec_syntax(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_tables_align_columns_without_trailing_spaces() -> None:
    table = render_table(("A", "LONGER"), [("wide-cell", "x"), ("b", "")])
    assert table.splitlines() == ["A           LONGER", "wide-cell   x", "b"]


def test_specs_table_sorts_by_namespace_then_name_with_ages_and_short_digests() -> None:
    table = specs_table(
        [spec("zeta", 1, 30, "prod"), spec("myresiliency", 2, 330), spec("alpha", 1, 7200, "prod")],
        now=NOW,
    )
    assert table.splitlines() == [
        "NAMESPACE   NAME           REVISION   AGE     DIGEST",
        "default     myresiliency   2          5m30s   0123456789ab",
        "prod        alpha          1          120m    0123456789ab",
        "prod        zeta           1          30s     0123456789ab",
    ]
    header, first = table.splitlines()[:2]
    assert header.index("AGE") == first.index("5m30s")


def test_spec_json_is_stable_with_integer_numbers_and_rfc3339_times() -> None:
    shown = render_json(spec_to_json(spec("myresiliency", 2, 60)))
    parsed = json.loads(shown)
    assert parsed["revision"] == 2
    assert parsed["updateTime"] == "2023-11-14T22:12:20Z"
    assert parsed["document"]["spec"]["policies"]["cb"]["maxRequests"] == 1
    assert "1.0" not in shown
    assert list(parsed) == sorted(parsed)
    assert shown == render_json(json.loads(shown))  # rendering is deterministic


def test_yaml_output_separates_several_documents() -> None:
    assert specs_yaml([spec("a", 1, 0), spec("b", 1, 0)]) == (
        "kind: Resiliency\nmetadata:\n  name: a\n---\nkind: Resiliency\nmetadata:\n  name: b"
    )


@pytest.mark.parametrize(
    ("applied", "dry_run", "line"),
    [
        (
            spec_pb2.AppliedSpec(namespace="default", name="r", revision=1, changed=True),
            False,
            "resiliency.dapr.io/r created (revision 1)",
        ),
        (
            spec_pb2.AppliedSpec(namespace="default", name="r", revision=2, changed=True),
            False,
            "resiliency.dapr.io/r configured (revision 2)",
        ),
        (
            spec_pb2.AppliedSpec(namespace="default", name="r", revision=2, changed=False),
            False,
            "resiliency.dapr.io/r unchanged (revision 2)",
        ),
        (
            spec_pb2.AppliedSpec(namespace="prod", name="r", revision=1, changed=True),
            True,
            "resiliency.dapr.io/prod/r created (dry run)",
        ),
    ],
)
def test_apply_prints_kubectl_like_lines(
    applied: spec_pb2.AppliedSpec, dry_run: bool, line: str
) -> None:
    assert applied_line(applied, dry_run) == line


def test_history_shows_actions_and_what_a_rollback_restored() -> None:
    revisions = [
        spec_pb2.SpecRevision(
            revision=1,
            action=spec_pb2.REVISION_ACTION_APPLY,
            digest="aa" * 32,
            create_time=Timestamp(seconds=int(NOW) - 600),
        ),
        spec_pb2.SpecRevision(
            revision=2,
            action=spec_pb2.REVISION_ACTION_DELETE,
            create_time=Timestamp(seconds=int(NOW) - 60),
        ),
        spec_pb2.SpecRevision(
            revision=3,
            action=spec_pb2.REVISION_ACTION_ROLLBACK,
            digest="aa" * 32,
            rolled_back_to=1,
            create_time=Timestamp(seconds=int(NOW) - 5),
        ),
    ]
    rows = [line.split(None, 4) for line in history_table(revisions, now=NOW).splitlines()]
    assert rows == [
        ["REVISION", "ACTION", "AGE", "DIGEST", "NOTE"],
        ["1", "apply", "10m", "aaaaaaaaaaaa"],
        ["2", "delete", "60s", "-"],
        ["3", "rollback", "5s", "aaaaaaaaaaaa", "rolled back to revision 1"],
    ]
    as_json = history_to_json("default", "r", revisions)
    assert [(r["revision"], r["action"], r["rolledBackTo"]) for r in as_json["revisions"]] == [
        (1, "apply", 0),
        (2, "delete", 0),
        (3, "rollback", 1),
    ]


def resolved_for_checkout() -> policy_pb2.ResolvedPolicies:
    return policy_pb2.ResolvedPolicies(
        namespace="default",
        app_id="checkout",
        digest="d1",
        targets=[
            policy_pb2.TargetPolicy(
                kind=policy_pb2.TARGET_KIND_APP,
                name="order-processor",
                retry=policy_pb2.RetryPolicy(
                    name="retryForever",
                    backoff=policy_pb2.BACKOFF_KIND_CONSTANT,
                    duration=Duration(seconds=5),
                    max_retries=-1,
                ),
                circuit_breaker=policy_pb2.CircuitBreakerPolicy(
                    name="simpleCB",
                    max_requests=1,
                    timeout=Duration(seconds=5),
                    trip="consecutiveFailures >= 5",
                ),
                spec_namespace="default",
                spec_name="myresiliency",
            ),
            policy_pb2.TargetPolicy(
                kind=policy_pb2.TARGET_KIND_COMPONENT,
                direction=policy_pb2.COMPONENT_DIRECTION_OUTBOUND,
                component_type="state",
                is_default=True,
                timeout=policy_pb2.TimeoutPolicy(
                    name="general", duration=Duration(nanos=500_000_000)
                ),
                fallback=policy_pb2.FallbackPolicy(
                    name="cached", response=policy_pb2.FallbackResponse(status=200)
                ),
                spec_namespace="default",
                spec_name="defaults",
            ),
            policy_pb2.TargetPolicy(
                kind=policy_pb2.TARGET_KIND_APP,
                is_default=True,
                retry=policy_pb2.RetryPolicy(
                    name="DefaultAppRetryPolicy",
                    backoff=policy_pb2.BACKOFF_KIND_EXPONENTIAL,
                    max_interval=Duration(seconds=60),
                    max_retries=3,
                ),
                spec_namespace="default",
                spec_name="defaults",
            ),
        ],
    )


def test_resolve_table_has_one_row_per_target_and_labels_defaults() -> None:
    rows = resolved_rows(resolved_for_checkout())
    assert rows == [
        (
            "app",
            "order-processor",
            "-",
            "-",
            "retryForever (constant 5s, unlimited)",
            "simpleCB (consecutiveFailures >= 5, open 5s, 1 probe(s))",
            "-",
            "default/myresiliency",
        ),
        (
            "component",
            "(default state component)",
            "outbound",
            "general (500ms)",
            "-",
            "-",
            "cached (status 200)",
            "default/defaults",
        ),
        (
            "app",
            "(default app)",
            "-",
            "-",
            "DefaultAppRetryPolicy (exponential, max 1m, 3 retries)",
            "-",
            "-",
            "default/defaults",
        ),
    ]
    table = resolved_table(resolved_for_checkout())
    assert table.splitlines()[0].split() == [
        "KIND",
        "TARGET",
        "DIRECTION",
        "TIMEOUT",
        "RETRY",
        "CIRCUIT-BREAKER",
        "FALLBACK",
        "SPEC",
    ]


def test_resolve_table_shows_a_breaker_quorum() -> None:
    policies = resolved_for_checkout()
    policies.targets[0].circuit_breaker.quorum.CopyFrom(
        policy_pb2.BreakerQuorum(min_instances=2, min_share=0.5)
    )
    assert resolved_rows(policies)[0][5] == (
        "simpleCB (consecutiveFailures >= 5, open 5s, 1 probe(s), "
        "quorum 2 instances and 50% of reporting)"
    )


def test_resolve_table_says_when_nothing_applies_and_lists_builtin_retries() -> None:
    policies = policy_pb2.ResolvedPolicies(namespace="default", app_id="order-processor")
    assert resolved_table(policies) == (
        'no policies apply to app "order-processor" in namespace "default"'
    )
    policies.builtin_retries["DaprBuiltInServiceRetries"].CopyFrom(
        policy_pb2.RetryPolicy(duration=Duration(seconds=1), max_retries=3)
    )
    assert resolved_table(policies).splitlines()[1:] == [
        "",
        "built-in retries (Dapr's defaults unless a spec overrides them):",
        "  DaprBuiltInServiceRetries: constant 1s, 3 retries",
    ]


def test_resolve_json_uses_the_proto3_json_mapping() -> None:
    shown = json.loads(render_json(resolved_to_json(resolved_for_checkout())))
    first = shown["targets"][0]
    assert first["name"] == "order-processor"
    assert first["retry"]["duration"] == "5s"
    assert first["retry"]["maxRetries"] == -1
    assert first["circuitBreaker"]["trip"] == "consecutiveFailures >= 5"
    assert shown["appId"] == "checkout"


def test_resolve_table_shows_fleet_budgets_only_when_a_target_has_one() -> None:
    policies = resolved_for_checkout()
    assert "RATE-LIMIT" not in resolved_table(policies)
    target = policies.targets[0]
    target.rate_limit.CopyFrom(policy_pb2.RateLimitPolicy(
        name="ordersLimit", limit=200, period=Duration(seconds=1), burst=50,
        scope=policy_pb2.RATE_LIMIT_SCOPE_APP, when_exceeded=policy_pb2.WHEN_EXCEEDED_REJECT))
    target.retry_budget.CopyFrom(policy_pb2.RetryBudgetPolicy(
        name="ordersRetries", ratio=0.2, window=Duration(seconds=10),
        min_retries_per_second=10))
    headers = resolved_table(policies).splitlines()[0].split()
    assert headers[-3:] == ["RATE-LIMIT", "RETRY-BUDGET", "SPEC"]
    row = resolved_rows(policies)[0]
    assert row[7:9] == ("ordersLimit (200 per 1s, burst 50, app, reject)",
                        "ordersRetries (20% over 10s, floor 10/s)")
    assert [len(r) for r in resolved_rows(policies)] == [len(headers)] * len(policies.targets)
