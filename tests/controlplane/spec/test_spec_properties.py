"""Whatever text arrives, parsing either succeeds or raises SpecValidationError."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusebox.controlplane.spec import SpecValidationError, parse_document_mapping, parse_documents
from tests.controlplane.spec.spec_samples import SEED

KEYS = [
    "apiVersion", "kind", "metadata", "name", "namespace", "scopes", "spec", "policies",
    "targets", "timeouts", "retries", "circuitBreakers", "fallbacks", "apps", "actors",
    "components", "outbound", "inbound", "retry", "timeout", "circuitBreaker", "fallback",
    "policy", "duration", "maxInterval", "maxRetries", "matching", "httpStatusCodes",
    "gRPCStatusCodes", "maxRequests", "interval", "trip", "response", "status", "body",
    "headers", "function", "circuitBreakerScope", "multiplier", "<<", "x",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["dapr.io/v1alpha1", "Resiliency", "5s", "500", "1h30m", "-1s", "500,502-504",
         "429, 500", "consecutiveFailures > 5", "requests / 0 > 1", "both", "exponential",
         "r", "cb", "", "~", "2024-01-01"]
    ),
    st.text(max_size=10),
)


def _documents(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=5),
    )


DOCUMENTS = st.recursive(SCALARS, _documents, max_leaves=30)


def _mutations(text: str) -> st.SearchStrategy[str]:
    def mutate(edits: list[tuple[int, int, str]]) -> str:
        result = text
        for position, length, insert in edits:
            at = position % (len(result) + 1)
            result = result[:at] + insert + result[at + length :]
        return result

    inserts = st.sampled_from(["", "&a ", "*a", "[", "{", "}", ":", "- ", "\n", "  ", "---\n",
                               "!!binary ", "!foo ", "<<: *a\n", "\t", "'", '"', "\x00"])
    return st.lists(
        st.tuples(
            st.integers(0, 10_000), st.integers(0, 8), st.one_of(inserts, st.text(max_size=3))
        ),
        min_size=1,
        max_size=6,
    ).map(mutate)


YAMLISH = st.one_of(
    st.text(max_size=200),
    DOCUMENTS.map(lambda d: yaml.safe_dump(d, sort_keys=False)),
    st.lists(DOCUMENTS, min_size=1, max_size=3).map(
        lambda ds: yaml.safe_dump_all(ds, sort_keys=False)
    ),
    _mutations(SEED),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_random_yaml_raises_only_spec_validation_error(text: str) -> None:
    try:
        documents = parse_documents(text, "fuzz.yaml")
    except SpecValidationError as error:
        assert error.violations
        for violation in error.violations:
            assert violation.source == "fuzz.yaml"
            assert violation.message
            assert violation.line >= 0 and violation.column >= 0
        return
    for document in documents:
        assert document.spec.name
        assert parse_documents(document.yaml)[0].digest == document.digest


@settings(max_examples=200, deadline=None)
@given(DOCUMENTS)
def test_random_mapping_raises_only_spec_validation_error(document: Any) -> None:
    try:
        parse_document_mapping(document)
    except SpecValidationError as error:
        assert error.violations
