"""Specs with more policies or targets than accepted are refused with the field path."""

from __future__ import annotations

import pytest

from fusebox.controlplane.spec import (
    MAX_POLICIES_PER_SPEC,
    MAX_TARGETS_PER_SPEC,
    SpecValidationError,
    parse_documents,
)


def spec(policies: int, targets: int) -> str:
    timeouts = "".join(f"      t{n}: 1s\n" for n in range(policies))
    apps = "".join(f"      app-{n}:\n        timeout: t0\n" for n in range(targets))
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: big\nspec:\n"
        f"  policies:\n    timeouts:\n{timeouts}  targets:\n    apps:\n{apps}"
    )


def test_a_spec_at_the_limits_is_accepted() -> None:
    (document,) = parse_documents(spec(MAX_POLICIES_PER_SPEC, MAX_TARGETS_PER_SPEC), "big.yaml")
    assert len(document.spec.timeouts) == MAX_POLICIES_PER_SPEC


@pytest.mark.parametrize(
    ("policies", "targets", "path", "what", "limit"),
    [
        (MAX_POLICIES_PER_SPEC + 1, 1, "spec.policies", "policies", MAX_POLICIES_PER_SPEC),
        (1, MAX_TARGETS_PER_SPEC + 1, "spec.targets", "targets", MAX_TARGETS_PER_SPEC),
    ],
)
def test_one_more_policy_or_target_is_refused_with_its_field_path(
    policies: int, targets: int, path: str, what: str, limit: int,
) -> None:
    with pytest.raises(SpecValidationError) as refused:
        parse_documents(spec(policies, targets), "big.yaml")
    (violation,) = refused.value.violations
    assert violation.field_path == path
    assert violation.source == "big.yaml" and violation.line > 0
    assert violation.message.startswith(f"{limit + 1} {what} in one spec, at most {limit}")
