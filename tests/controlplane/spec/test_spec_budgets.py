"""Fleet budgets in specs (docs/budgets.md): rateLimits and retryBudgets parsed with their
defaults, refused with field path, line and what is accepted, named by targets and
checked across documents, resolved onto targets and carried on the wire."""

from __future__ import annotations

import textwrap

from fusebox.agent.policy import (
    RateLimitPolicy,
    RateLimitScope,
    RetryBudgetPolicy,
    TargetKind,
    WhenExceeded,
    resolved_from_proto,
    resolved_to_proto,
)
from fusebox.controlplane.resolve import check_documents, resolve_policies
from fusebox.controlplane.spec import (
    Severity,
    parse_document_mapping,
    parse_documents,
)
from tests.controlplane.spec.spec_samples import HEADER, SEED
from tests.controlplane.spec.test_spec_validation import rejected

BUDGETS = HEADER + textwrap.dedent("""\
    spec:
      policies:
        retries: {retryThree: {maxRetries: 3}}
        rateLimits:
          ordersLimit:
            limit: 200
            period: 1s
            burst: 50
            scope: fleet
            whenExceeded: wait
            maxWait: 250ms
            countRetries: false
          plain: {limit: 10}
        retryBudgets:
          ordersRetries: {ratio: 0.1, window: 5s, minRetriesPerSecond: 2.5}
          defaults: {}
      targets:
        apps:
          order-processor: {retry: retryThree, rateLimit: ordersLimit, retryBudget: ordersRetries}
        actors:
          Cart: {rateLimit: plain}
        components:
          store: {outbound: {retry: retryThree, retryBudget: defaults}, inbound: {rateLimit: plain}}
    """)


def test_budgets_parse_with_their_values_and_defaults() -> None:
    [document] = parse_documents(BUDGETS)
    spec = document.spec
    assert spec.rate_limits["ordersLimit"] == RateLimitPolicy(
        "ordersLimit", limit=200, period=1.0, burst=50, scope=RateLimitScope.FLEET,
        when_exceeded=WhenExceeded.WAIT, max_wait=0.25, count_retries=False,
    )
    # Defaults: period 1s, burst = limit, scope app, reject, count retries.
    assert spec.rate_limits["plain"] == RateLimitPolicy(
        "plain", limit=10, period=1.0, burst=10, scope=RateLimitScope.APP,
        when_exceeded=WhenExceeded.REJECT, max_wait=1.0, count_retries=True,
    )
    assert spec.retry_budgets["ordersRetries"] == RetryBudgetPolicy("ordersRetries", 0.1, 5.0, 2.5)
    assert spec.retry_budgets["defaults"] == RetryBudgetPolicy("defaults", 0.2, 10.0, 10.0)
    app = spec.apps["order-processor"]
    assert (app.rate_limit, app.retry_budget) == ("ordersLimit", "ordersRetries")
    assert spec.actors["Cart"].rate_limit == "plain"
    store = spec.components["store"]
    assert store.outbound is not None and store.outbound.retry_budget == "defaults"
    assert store.inbound is not None and store.inbound.rate_limit == "plain"
    assert document.warnings == ()


def test_a_dapr_document_without_budgets_parses_as_before() -> None:
    [document] = parse_documents(SEED)
    assert dict(document.spec.rate_limits) == {} and dict(document.spec.retry_budgets) == {}
    ref = document.spec.apps["order-processor"]
    assert (ref.rate_limit, ref.retry_budget) == (None, None)


def test_a_structured_document_reads_integral_limits_as_integers() -> None:
    document = {
        "apiVersion": "dapr.io/v1alpha1", "kind": "Resiliency", "metadata": {"name": "s"},
        "spec": {"policies": {"rateLimits": {"l": {"limit": 5.0, "burst": 2.0}}}},
    }
    assert parse_document_mapping(document).spec.rate_limits["l"].limit == 5


def _spec(body: str) -> str:
    return HEADER + textwrap.dedent(body)


# The invalid budgets are rows of test_spec_validation.INVALID (field path, message, line).


def test_a_mistyped_when_exceeded_does_not_also_blame_max_wait() -> None:
    violations = rejected(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, whenExceeded: wiat, maxWait: 1s}
        """))
    assert [v.field_path for v in violations] == ["spec.policies.rateLimits.l.whenExceeded"]


def test_a_retry_budget_on_a_target_without_retry_is_a_warning() -> None:
    [document] = parse_documents(_spec("""\
        spec:
          policies:
            retryBudgets: {b: {}}
          targets:
            apps:
              a: {retryBudget: b}
        """), "test.yaml")
    [warning] = document.warnings
    assert (warning.field_path, warning.line, warning.severity) == (
        "spec.targets.apps.a.retryBudget", 10, Severity.WARNING)
    assert "names no retry policy" in warning.message


def test_a_target_with_only_a_rate_limit_uses_a_policy() -> None:
    [document] = parse_documents(_spec("""\
        spec:
          policies:
            rateLimits: {l: {limit: 1}}
          targets:
            apps:
              a: {rateLimit: l}
        """))
    assert document.warnings == ()


# ---- across documents ------------------------------------------------------------------


def test_a_budget_named_nowhere_is_an_error_with_a_did_you_mean() -> None:
    [document] = parse_documents(BUDGETS.replace("rateLimit: ordersLimit",
                                                 "rateLimit: orderLimit"), "test.yaml")
    [error] = check_documents([document], [])
    assert (error.field_path, error.severity) == (
        "spec.targets.apps.order-processor.rateLimit", Severity.ERROR)
    assert "rateLimit policy 'orderLimit' is not defined" in error.message
    assert "did you mean 'ordersLimit'" in error.message


def test_a_budget_defined_in_another_document_is_found() -> None:
    policies = HEADER.replace("name: s", "name: budgets") + textwrap.dedent("""\
        spec:
          policies:
            rateLimits: {l: {limit: 3}}
        """)
    targets = _spec("""\
        spec:
          targets:
            apps:
              a: {rateLimit: l}
        """)
    documents = parse_documents(policies + "---\n" + targets)
    assert check_documents(documents, []) == []
    resolved = resolve_policies([d.spec for d in documents], "default", "checkout")
    [target] = resolved.targets
    assert target.rate_limit == RateLimitPolicy("l", limit=3)
    # The target entry's spec names the budget, as it names a breaker.
    assert (target.spec_namespace, target.spec_name) == ("default", "s")


# ---- resolution and the wire -------------------------------------------------------------


def test_budgets_reach_their_targets_and_survive_the_wire() -> None:
    [document] = parse_documents(BUDGETS)
    resolved = resolve_policies([document.spec], "default", "checkout")
    by_kind = {(t.kind, t.name, t.direction): t for t in resolved.targets}
    app = by_kind[(TargetKind.APP, "order-processor", None)]
    assert app.rate_limit == document.spec.rate_limits["ordersLimit"]
    assert app.retry_budget == document.spec.retry_budgets["ordersRetries"]
    assert by_kind[(TargetKind.ACTOR, "Cart", None)].rate_limit is not None
    assert resolved_from_proto(resolved_to_proto(resolved)).targets == resolved.targets


def test_budgets_get_no_default_slot() -> None:
    [document] = parse_documents(_spec("""\
        spec:
          policies:
            retries: {DefaultRetryPolicy: {maxRetries: 1}}
            rateLimits: {DefaultRateLimitPolicy: {limit: 1}}
        """))
    slots = resolve_policies([document.spec], "default", "checkout").targets
    assert slots and all(slot.is_default and slot.retry is not None for slot in slots)
    assert all((slot.rate_limit, slot.retry_budget) == (None, None) for slot in slots)


def test_a_dapr_spec_resolves_to_the_same_digest_as_before_budgets_existed() -> None:
    # Unset budget fields serialise to nothing, so a server with budgets re-pushes nothing
    # to agents whose policies did not change. The digest was computed at 05faf2a, the
    # commit before budgets.
    [document] = parse_documents(SEED)
    resolved = resolved_to_proto(resolve_policies([document.spec], "default", "checkout"))
    [target] = resolved.targets
    assert not target.HasField("rate_limit") and not target.HasField("retry_budget")
    assert resolved.digest == "8d154324845d8eba"


def test_a_budget_change_changes_the_digest() -> None:
    [document] = parse_documents(BUDGETS)
    [changed] = parse_documents(BUDGETS.replace("limit: 200", "limit: 201"))
    before = resolved_to_proto(resolve_policies([document.spec], "default", "checkout"))
    after = resolved_to_proto(resolve_policies([changed.spec], "default", "checkout"))
    assert before.digest != after.digest
