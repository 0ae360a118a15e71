"""Checking documents together: policies named across documents, defined nowhere,
out of scope, taken over by a later spec; errors and warnings, each located."""

from __future__ import annotations

import textwrap

import pytest

from fusebox.controlplane.resolve import BUILTIN_RETRIES, check_documents
from fusebox.controlplane.spec import ParsedDocument, Severity, Violation, parse_documents

HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\n"


def doc(
    name: str,
    body: str,
    *,
    scopes: str = "",
    namespace: str = "",
    source: str | None = None,
) -> ParsedDocument:
    """A document named ``name`` (in ``source``, default NAME.yaml) with ``body`` as its spec."""
    text = HEADER + f"metadata:\n  name: {name}\n"
    text += f"  namespace: {namespace}\n" if namespace else ""
    text += f"scopes: [{scopes}]\n" if scopes else ""
    [document] = parse_documents(text + textwrap.dedent(body), source or f"{name}.yaml")
    return document


def errors(found: list[Violation]) -> list[Violation]:
    return [v for v in found if v.severity is Severity.ERROR]


def warnings(found: list[Violation]) -> list[Violation]:
    return [v for v in found if v.severity is Severity.WARNING]


# A target in one document, its policies in another (Dapr's policies are global).
TARGETS_BODY = """\
    spec:
      targets:
        apps:
          order-processor: {retry: retryForever, circuitBreaker: simpleCB}
    """
POLICIES_BODY = """\
    spec:
      policies:
        retries:
          retryForever: {policy: constant, duration: 5s, maxRetries: -1}
        circuitBreakers:
          simpleCB: {maxRequests: 1, timeout: 5s, trip: consecutiveFailures >= 5}
    """
TARGETS = doc("targets", TARGETS_BODY)
POLICIES = doc("policies", POLICIES_BODY)
TARGET_LINE = 8  # the line of order-processor's entry in TARGETS


# ---- a policy defined in another document -------------------------------------------------


def test_a_policy_defined_in_another_document_applied_together_is_found() -> None:
    assert check_documents([TARGETS, POLICIES], []) == []
    assert check_documents([TARGETS, POLICIES], None) == []


def test_a_policy_defined_in_a_stored_document_is_found() -> None:
    assert check_documents([TARGETS], [POLICIES.spec]) == []


def test_a_policy_defined_nowhere_is_an_error_with_its_line_and_a_did_you_mean() -> None:
    typo = doc("typo", """\
        spec:
          targets:
            apps:
              order-processor: {retry: retryForevr}
        """)
    [error] = check_documents([typo], [POLICIES.spec])
    assert error.severity is Severity.ERROR
    assert (error.source, error.line, error.field_path) == (
        "typo.yaml", TARGET_LINE, "spec.targets.apps.order-processor.retry"
    )
    assert error.message == (
        "retry policy 'retryForevr' is not defined in any Resiliency document of namespace "
        "'default' (did you mean 'retryForever'?); defined retries: retryForever"
    )


def test_a_policy_of_a_kind_no_document_defines_says_so() -> None:
    found = check_documents([TARGETS], [])
    assert {v.field_path for v in found} == {
        "spec.targets.apps.order-processor.retry",
        "spec.targets.apps.order-processor.circuitBreaker",
    }
    assert all(v.severity is Severity.ERROR for v in found)
    assert "no document of the namespace defines any circuitBreakers" in found[1].message


def test_offline_a_policy_not_in_the_files_given_is_a_warning_saying_what_was_not_checked(
) -> None:
    found = check_documents([TARGETS], None)
    assert [v.severity for v in found] == [Severity.WARNING, Severity.WARNING]
    assert found[0].message == (
        "retry policy 'retryForever' is not defined in the files given; it must be defined in "
        "another Resiliency document of namespace 'default', or apply will refuse it"
    )
    assert found[0].line == TARGET_LINE and found[0].column > 1


def test_policies_of_another_namespace_do_not_count() -> None:
    elsewhere = doc("policies", POLICIES_BODY, namespace="prod")
    assert len(errors(check_documents([TARGETS], [elsewhere.spec]))) == 2


def test_a_stored_spec_replaced_by_the_input_no_longer_provides_its_policies() -> None:
    emptied = doc("policies", "spec: {}\n")
    found = check_documents([TARGETS, emptied], [POLICIES.spec])
    assert len(errors(found)) == 2


@pytest.mark.parametrize("builtin", sorted(BUILTIN_RETRIES))
def test_a_builtin_retry_needs_no_definition(builtin: str) -> None:
    target = doc("builtin", f"""\
        spec:
          targets:
            apps:
              order-processor: {{retry: {builtin}}}
            actors:
              Cart: {{retry: {builtin}}}
        """)
    assert check_documents([target], []) == []
    assert check_documents([target], None) == []


def test_builtin_names_are_retries_only() -> None:
    target = doc("builtin", """\
        spec:
          targets:
            apps:
              order-processor: {timeout: DaprBuiltInServiceRetries}
        """)
    [error] = check_documents([target], [])
    assert error.field_path == "spec.targets.apps.order-processor.timeout"


def test_a_retry_typo_close_to_a_builtin_suggests_it() -> None:
    target = doc("builtin", """\
        spec:
          targets:
            apps:
              order-processor: {retry: DaprBuiltInServiceRetry}
        """)
    [error] = check_documents([target], [])
    assert "did you mean 'DaprBuiltInServiceRetries'?" in error.message


# ---- scopes -----------------------------------------------------------------------------------


def test_a_policy_defined_only_for_other_apps_is_a_warning_naming_the_apps_left_out() -> None:
    scoped_targets = doc("targets", TARGETS_BODY, scopes="checkout, cart")
    scoped_policies = doc("policies", POLICIES_BODY, scopes="checkout")
    found = check_documents([scoped_targets, scoped_policies], [])
    assert errors(found) == []
    retry, breaker = warnings(found)
    assert retry.field_path == "spec.targets.apps.order-processor.retry"
    assert "defined only by spec default/policies (policies.yaml), scopes: checkout" in (
        retry.message
    )
    assert "this spec also applies to cart, for which Dapr finds no such policy" in retry.message
    assert "this target gets no circuitBreaker there" in breaker.message


def test_an_unscoped_target_with_scoped_policies_leaves_out_every_other_app() -> None:
    scoped_policies = doc("policies", POLICIES_BODY, scopes="checkout")
    found = check_documents([TARGETS], [scoped_policies.spec])
    assert len(found) == 2 and errors(found) == []
    assert "applies to every app-id except checkout" in found[0].message
    assert "(stored)" in found[0].message


# ---- a later spec takes over ------------------------------------------------------------------


RETRY_1_BODY = """\
    spec:
      policies:
        retries: {r: {maxRetries: 1}}
      targets:
        apps:
          order-processor: {retry: r}
    """
FIRST = doc("first", RETRY_1_BODY)
SECOND = doc("second", RETRY_1_BODY.replace("maxRetries: 1", "maxRetries: 2"))


def test_a_target_bound_by_two_specs_warns_both_and_names_the_winner() -> None:
    found = warnings(check_documents([FIRST, SECOND], []))
    first_target, second_target = (
        next(v for v in found if v.source == s and v.field_path.startswith("spec.targets"))
        for s in ("first.yaml", "second.yaml")
    )
    assert first_target.field_path == "spec.targets.apps.order-processor"
    assert (first_target.line, first_target.column) == (10, 7)
    assert first_target.message == (
        "app target 'order-processor' is also bound by spec default/second (second.yaml); for "
        "the apps they share, spec default/second (second.yaml) takes it over (specs are merged "
        "in the order of their names and the last one wins, as the last document Dapr loads "
        "wins), not this spec (a target entry is replaced whole, never merged field by field)"
    )
    assert "for the apps they share, this spec's entry wins" in second_target.message


def test_a_policy_defined_differently_by_two_specs_warns_and_names_the_winner() -> None:
    found = warnings(check_documents([FIRST], [SECOND.spec]))
    policy = next(v for v in found if v.field_path == "spec.policies.retries.r")
    assert "retry policy 'r' is also defined, differently, by spec default/second (stored)" in (
        policy.message
    )
    assert "spec default/second (stored) takes it over" in policy.message
    assert "for every target naming 'r' in any document" in policy.message


def test_the_same_policy_defined_twice_alike_is_no_warning() -> None:
    same = doc("second", """\
        spec:
          policies:
            retries: {r: {maxRetries: 1}}
        """)
    assert check_documents([FIRST], [same.spec]) == []


def test_specs_whose_scopes_never_meet_take_nothing_over() -> None:
    first = doc("first", RETRY_1_BODY, scopes="a")
    second = doc("second", RETRY_1_BODY.replace("maxRetries: 1", "maxRetries: 2"), scopes="b")
    assert check_documents([first, second], []) == []


# ---- the input against what is stored ---------------------------------------------------------


def test_removing_a_policy_a_stored_spec_names_is_a_warning_at_the_new_document() -> None:
    emptied = doc("policies", """\
        spec:
          policies:
            timeouts: {t: 1s}
        """)
    found = check_documents([emptied], [TARGETS.spec, POLICIES.spec])
    assert errors(found) == []
    breaker, retry = found  # both at spec.policies, which no longer has these sections
    assert (retry.source, retry.field_path, retry.line) == (
        "policies.yaml", "spec.policies.retries", 7
    )
    assert retry.message.startswith(
        "retry policy 'retryForever' is no longer defined by any Resiliency document of "
        "namespace 'default' once this is applied, but spec default/targets (stored) names it "
        "at spec.targets.apps.order-processor.retry"
    )
    assert "circuitBreaker policy 'simpleCB'" in breaker.message


def test_one_input_may_define_a_spec_once_across_files() -> None:
    again = doc("targets", TARGETS_BODY, source="again.yaml")
    [error] = errors(check_documents([TARGETS, POLICIES, again], []))
    assert (error.source, error.field_path) == ("again.yaml", "metadata.name")
    assert "spec default/targets is also defined in targets.yaml" in error.message
