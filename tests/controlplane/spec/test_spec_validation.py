"""Parsing and validating Resiliency documents: the seed, multi-document files,
and a table of invalid specs with their field paths, messages and lines."""

from __future__ import annotations

import json
import textwrap
from hashlib import sha256

import pytest

from fusebox.agent.policy import BackoffKind, BreakerQuorum, BreakerScope, StatusCodes
from fusebox.controlplane.spec import (
    MAX_SPEC_BYTES,
    Severity,
    SpecValidationError,
    Violation,
    parse_document_mapping,
    parse_documents,
)
from tests.controlplane.spec.spec_samples import HEADER, SEED


def rejected(text: str) -> list[Violation]:
    with pytest.raises(SpecValidationError) as caught:
        parse_documents(text, "test.yaml")
    return caught.value.violations


def test_seed_spec_parses_into_the_quickstart_policies() -> None:
    [document] = parse_documents(SEED, "resiliency.yaml")
    spec = document.spec
    assert spec.key == ("default", "myresiliency")
    assert spec.scopes == ("checkout",)
    assert spec.applies_to("checkout") and not spec.applies_to("order-processor")
    retry = spec.retries["retryForever"]
    assert (retry.backoff, retry.duration, retry.max_interval, retry.max_retries) == (
        BackoffKind.CONSTANT,
        5.0,
        5.0,
        -1,
    )
    breaker = spec.circuit_breakers["simpleCB"]
    assert (breaker.max_requests, breaker.interval, breaker.timeout, breaker.trip) == (
        1,
        0.0,
        5.0,
        "consecutiveFailures >= 5",
    )
    target = spec.apps["order-processor"]
    assert (target.retry, target.circuit_breaker, target.timeout) == (
        "retryForever",
        "simpleCB",
        None,
    )
    assert dict(spec.timeouts) == {} and dict(spec.actors) == {}


def test_parsed_document_carries_its_text_plain_data_and_canonical_digest() -> None:
    [document] = parse_documents(SEED)
    assert document.yaml.startswith("apiVersion: dapr.io/v1alpha1")
    assert document.document["spec"]["policies"]["retries"]["retryForever"]["maxRetries"] == -1
    canonical = json.dumps(document.document, sort_keys=True, separators=(",", ":"))
    assert document.digest == sha256(canonical.encode()).hexdigest()
    # The same content from the API (a Struct: every number a float) has the same digest.
    as_struct = json.loads(json.dumps(document.document).replace(": -1", ": -1.0"))
    assert parse_document_mapping(as_struct).digest == document.digest


def test_multi_document_file_yields_each_document_with_its_own_text() -> None:
    text = SEED + "---\n---\n" + HEADER.replace("name: s", "name: other\n  namespace: prod")
    first, second = parse_documents(text)
    assert first.spec.key == ("default", "myresiliency")
    assert second.spec.key == ("prod", "other")
    assert "myresiliency" not in second.yaml and "other" in second.yaml
    assert "other" not in first.yaml


def test_errors_of_every_document_are_reported_together() -> None:
    text = HEADER + "spec: {policies: {timeouts: {t: 5x}}}\n---\n" + HEADER.replace(
        "name: s", "name: t"
    ) + "spec: {policies: {timeouts: {t: 5y}}}\n"
    violations = rejected(text)
    assert [(v.line, v.field_path) for v in violations] == [
        (5, "spec.policies.timeouts.t"),
        (11, "spec.policies.timeouts.t"),
    ]


def test_extensions_parse_into_policy_values() -> None:
    text = HEADER + textwrap.dedent("""\
        spec:
          policies:
            retries:
              backoff:
                policy: Exponential
                maxInterval: 10s
                maxRetries: 3
                initialInterval: 100ms
                multiplier: 2
                randomizationFactor: 0
                maxElapsedTime: 0
                honorRetryAfter: true
                matching:
                  httpStatusCodes: "429,500-504"
                  gRPCStatusCodes: "14"
            circuitBreakers: {cb: {maxRequests: 0, timeout: -1}}
            fallbacks:
              static:
                response: {status: 503, headers: {Retry-After: "5"}, body: '{"ok":false}'}
                matching: {httpStatusCodes: "500-599"}
              code: {function: cached_orders}
            timeouts: {fast: "250", none: 0}
          targets:
            apps:
              a: {retry: backoff, fallback: static, timeout: fast, circuitBreakerCacheSize: 10}
            actors:
              Cart: {circuitBreaker: cb, circuitBreakerScope: both}
            components:
              store: {outbound: {fallback: code}, inbound: {timeout: none}}
        """)
    [document] = parse_documents(text)
    spec = document.spec
    retry = spec.retries["backoff"]
    assert retry.backoff is BackoffKind.EXPONENTIAL
    assert (retry.initial_interval, retry.multiplier, retry.randomization_factor) == (0.1, 2.0, 0.0)
    assert (retry.max_elapsed_time, retry.honor_retry_after, retry.max_retries) == (0.0, True, 3)
    assert retry.http_status_codes == StatusCodes(((429, 429), (500, 504)))
    assert 14 in retry.grpc_status_codes
    static = spec.fallbacks["static"]
    assert static.response is not None and static.function is None
    assert static.response.status == 503
    assert static.response.headers == (("Retry-After", "5"),)
    assert static.response.body == b'{"ok":false}'
    assert spec.fallbacks["code"].function == "cached_orders"
    assert spec.timeouts["fast"].duration == 0.25 and spec.timeouts["none"].duration == 0.0
    breaker = spec.circuit_breakers["cb"]
    assert (breaker.max_requests, breaker.timeout) == (1, 60.0)  # Dapr's 0 and <= 0 defaults
    assert breaker.trip == "consecutiveFailures > 5"
    assert spec.apps["a"].circuit_breaker_cache_size == 10
    assert spec.actors["Cart"].circuit_breaker_scope is BreakerScope.BOTH
    store = spec.components["store"]
    assert store.outbound is not None and store.outbound.fallback == "code"
    assert store.inbound is not None and store.inbound.timeout == "none"


def test_a_breaker_quorum_parses_with_either_rule_or_both() -> None:
    text = HEADER + textwrap.dedent("""\
        spec:
          policies:
            circuitBreakers:
              sharedCB:
                maxRequests: 1
                timeout: 30s
                trip: consecutiveFailures >= 5
                quorum:
                  minInstances: 2
                  minShare: 0.5
              byCount: {quorum: {minInstances: 3}}
              byShare: {quorum: {minShare: 1}}
              dapr: {trip: consecutiveFailures >= 5}
        """)
    breakers = parse_documents(text)[0].spec.circuit_breakers
    assert breakers["sharedCB"].quorum == BreakerQuorum(min_instances=2, min_share=0.5)
    assert breakers["sharedCB"].trip == "consecutiveFailures >= 5"
    assert breakers["byCount"].quorum == BreakerQuorum(min_instances=3)
    assert breakers["byShare"].quorum == BreakerQuorum(min_share=1.0)
    assert breakers["dapr"].quorum is None


def test_a_structured_quorum_reads_integral_numbers_as_integers() -> None:
    document = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "s"},
        "spec": {"policies": {"circuitBreakers": {
            "cb": {"quorum": {"minInstances": 2.0, "minShare": 1.0}},
        }}},
    }
    parsed = parse_document_mapping(document)
    assert parsed.spec.circuit_breakers["cb"].quorum == BreakerQuorum(2, 1.0)
    document["spec"]["policies"]["circuitBreakers"]["cb"]["quorum"] = {"minInstances": 1.5}
    with pytest.raises(SpecValidationError) as caught:
        parse_document_mapping(document, "api")
    [violation] = caught.value.violations
    assert (violation.line, violation.field_path) == (
        0, "spec.policies.circuitBreakers.cb.quorum.minInstances",
    )


def test_kubernetes_metadata_and_timestamps_are_tolerated_as_plain_data() -> None:
    text = HEADER + (
        "  namespace: prod\n"
        "  uid: 9f0e\n"
        '  resourceVersion: "12"\n'
        "  generation: 3\n"
        "  creationTimestamp: 2024-05-01T10:00:00Z\n"
        "  labels: {team: payments}\n"
    )
    [document] = parse_documents(text)
    assert document.spec.namespace == "prod"
    assert document.document["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"
    json.dumps(document.document)  # JSON-compatible


def test_structured_document_is_validated_with_the_same_rules() -> None:
    document = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "metadata": {"name": "s"},
        "spec": {"policies": {"retries": {"r": {"maxRetries": 2.5}}}},
    }
    with pytest.raises(SpecValidationError) as caught:
        parse_document_mapping(document, "api")
    [violation] = caught.value.violations
    assert (violation.source, violation.line, violation.field_path) == (
        "api",
        0,
        "spec.policies.retries.r.maxRetries",
    )
    document["spec"] = {"policies": {"retries": {"r": {"maxRetries": 2.0}}}}
    parsed = parse_document_mapping(document)
    assert parsed.spec.retries["r"].max_retries == 2
    assert parse_documents(parsed.yaml)[0].digest == parsed.digest


def test_str_of_the_error_is_one_line_per_violation() -> None:
    with pytest.raises(SpecValidationError) as caught:
        parse_documents("kind: Resiliency\n", "f.yaml")
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.violations) == 2
    assert lines[0].startswith("f.yaml:1:1: apiVersion: ")


def test_oversized_input_is_refused_before_parsing() -> None:
    text = HEADER + "# " + "x" * MAX_SPEC_BYTES + "\n"
    [violation] = rejected(text)
    assert "limit is 1048576 bytes" in violation.message


def test_alias_bomb_is_refused_with_a_clear_error() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        prev, name = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    [violation] = rejected("\n".join(lines) + "\n")
    assert "alias bomb" in violation.message


def test_deep_nesting_is_refused_without_recursing_to_the_limit() -> None:
    [violation] = rejected("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "deeper than 32 levels" in violation.message
    assert violation.line == 1


def test_empty_input_is_an_error() -> None:
    [violation] = rejected("# nothing here\n---\n")
    assert "no YAML document" in violation.message


def _spec(body: str) -> str:
    return HEADER + textwrap.dedent(body)


# (yaml, field path, message fragment, line or None)
INVALID = [
    pytest.param(
        HEADER.replace("dapr.io/v1alpha1", "dapr.io/v1"),
        "apiVersion", "expected apiVersion 'dapr.io/v1alpha1'", 1, id="wrong-apiVersion",
    ),
    pytest.param(
        HEADER.replace("Resiliency", "Configuration"),
        "kind", "expected kind 'Resiliency'", 2, id="wrong-kind",
    ),
    pytest.param(
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {namespace: x}\n",
        "metadata.name", "'name' is required", 3, id="missing-name",
    ),
    pytest.param(
        "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\n",
        "metadata", "'metadata' with a 'name' is required", 1, id="missing-metadata",
    ),
    pytest.param(
        HEADER.replace("name: s", "name: My_Spec"),
        "metadata.name", "is not a valid name", 4, id="bad-name",
    ),
    pytest.param(
        HEADER + "metdata: {}\n",
        "metdata", "did you mean 'metadata'", 5, id="unknown-top-level-field",
    ),
    pytest.param("- a\n- b\n", "", "expected a mapping", 1, id="non-mapping-document"),
    pytest.param(
        HEADER + "spec:\n  policies: {timeouts: {a: 1s}\n",
        "", "flow mapping, which started on line 6", 7, id="yaml-syntax-error",
    ),
    pytest.param(
        HEADER + "scopes: [a]\nscopes: [b]\n",
        "scopes", "duplicate key 'scopes' (first defined on line 5)", 6, id="duplicate-key",
    ),
    pytest.param(
        HEADER + "---\n" + HEADER, "metadata.name", "defined twice", 9, id="duplicate-spec-name",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                timeouts: {general: 5x}
            """),
        "spec.policies.timeouts.general", "unknown unit 'x'", 7, id="bad-duration-unit",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  retryForever: {duration: "1.5"}
            """),
        "spec.policies.retries.retryForever.duration", "missing unit", 8,
        id="duration-without-unit",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                timeouts: {t: -5s}
            """),
        "spec.policies.timeouts.t", "is negative", 7, id="negative-timeout",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r: {policy: linear}
            """),
        "spec.policies.retries.r.policy", "unknown retry policy type 'linear'", 8,
        id="unknown-retry-type",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r: {maxRetries: -2}
            """),
        "spec.policies.retries.r.maxRetries", "must be -1", 8, id="maxRetries-below-minus-one",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r:
                    matching: {httpStatusCodes: "399-299"}
            """),
        "spec.policies.retries.r.matching.httpStatusCodes", "reversed", 9, id="reversed-range",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r:
                    matching: {httpStatusCodes: "1,2,3,4"}
            """),
        "spec.policies.retries.r.matching.httpStatusCodes", "HTTP status codes are 100-599", 9,
        id="http-code-out-of-range",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r:
                    matching: {httpStatusCodes: "429, 500"}
            """),
        "spec.policies.retries.r.matching.httpStatusCodes", "spaces, which are not allowed", 9,
        id="space-after-comma",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r:
                    matching: {gRPCStatusCodes: "17"}
            """),
        "spec.policies.retries.r.matching.gRPCStatusCodes", "gRPC status codes are 0-16", 9,
        id="grpc-code-out-of-range",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r: {maxRetrys: 3}
            """),
        "spec.policies.retries.r.maxRetrys", "did you mean 'maxRetries'", 8,
        id="unknown-retry-field",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r: {multiplier: 2}
            """),
        "spec.policies.retries.r.multiplier", "applies only to exponential", 8,
        id="exponential-field-on-constant",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r: {policy: exponential, randomizationFactor: 1.5}
            """),
        "spec.policies.retries.r.randomizationFactor", "between 0 and 1", 8,
        id="randomization-out-of-range",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                circuitBreakers:
                  cb: {maxRequests: -1}
            """),
        "spec.policies.circuitBreakers.cb.maxRequests", "-1 is out of range", 8,
        id="negative-maxRequests",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                circuitBreakers:
                  cb: {trip: "consecutiveFailures >"}
            """),
        "spec.policies.circuitBreakers.cb.trip", "found the end of the expression", 8,
        id="trip-does-not-parse",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                circuitBreakers:
                  cb: {trip: "consecutivefailures > 5"}
            """),
        "spec.policies.circuitBreakers.cb.trip", "did you mean 'consecutiveFailures'", 8,
        id="trip-unknown-identifier",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                circuitBreakers:
                  cb: {trip: "consecutiveFailures + 1"}
            """),
        "spec.policies.circuitBreakers.cb.trip", "must be boolean", 8, id="trip-not-boolean",
    ),
    *(
        pytest.param(
            _spec(f"""\
                spec:
                  policies:
                    circuitBreakers:
                      cb:
                        trip: consecutiveFailures >= 5
                        quorum: {quorum}
                """),
            f"spec.policies.circuitBreakers.cb.quorum{field}", fragment, 10, id=case,
        )
        for case, quorum, field, fragment in [
            ("quorum-empty", "{}", "", "needs minInstances (distinct failing instances"),
            ("quorum-null", "null", "", "and/or minShare"),
            ("quorum-not-a-mapping", "2", "", "expected a quorum (a mapping"),
            ("quorum-unknown-field", "{minInstances: 2, minShares: 0.5}", ".minShares",
             "did you mean 'minShare'"),
            ("quorum-zero-instances", "{minInstances: 0}", ".minInstances",
             "0 is out of range: must be a number of instances from 1"),
            ("quorum-fractional-instances", "{minInstances: 1.5}", ".minInstances",
             "expected an integer, found the number 1.5"),
            ("quorum-instances-as-text", "{minInstances: '2'}", ".minInstances",
             "expected an integer, found the string '2'"),
            ("quorum-zero-share", "{minShare: 0}", ".minShare", "must be above 0 and at most 1"),
            ("quorum-share-above-one", "{minShare: 1.5}", ".minShare",
             "minShare 1.5 must be above 0 and at most 1"),
            ("quorum-share-as-text", "{minShare: '0.5'}", ".minShare",
             "expected a number, found the string '0.5'"),
            ("quorum-share-boolean", "{minShare: true}", ".minShare",
             "expected a number, found the boolean true"),
        ]
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                circuitBreakers: {cb: {}}
              targets:
                actors:
                  Cart: {circuitBreaker: cb}
            """),
        "spec.targets.actors.Cart.circuitBreakerScope", "required when an actor target", 10,
        id="actor-breaker-without-scope",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                circuitBreakers: {cb: {}}
              targets:
                actors:
                  Cart: {circuitBreaker: cb, circuitBreakerScope: Type}
            """),
        "spec.targets.actors.Cart.circuitBreakerScope", "did you mean 'type'", 10,
        id="actor-scope-wrong-case",
    ),
    pytest.param(
        _spec("""\
            spec:
              targets:
                components:
                  statestore: {outbond: {}}
            """),
        "spec.targets.components.statestore.outbond", "did you mean 'outbound'", 8,
        id="component-unknown-direction",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                fallbacks:
                  f: {response: {status: 200}, function: cached}
            """),
        "spec.policies.fallbacks.f", "exactly one of 'response'", 8, id="fallback-both-actions",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                fallbacks:
                  f: {response: {status: 700}}
            """),
        "spec.policies.fallbacks.f.response.status", "100-599", 8, id="fallback-bad-status",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                fallbacks:
                  f: {response: {headers: {Retry-After: 5}}}
            """),
        "spec.policies.fallbacks.f.response.headers.Retry-After", "must be strings", 8,
        id="fallback-header-not-string",
    ),
    pytest.param(
        HEADER + "scopes: checkout\n", "scopes", "expected a list of app-ids", 5,
        id="scopes-not-a-list",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries:
                  r:
                    matching: {httpStatusCodes: ","}
            """),
        "spec.policies.retries.r.matching.httpStatusCodes", "Dapr would then match no status code",
        9, id="status-code-list-of-only-commas",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries: {r: {}}
              targets:
                apps:
                  a: {retry: r, circuitBreakerCacheSize: -1}
            """),
        "spec.targets.apps.a.circuitBreakerCacheSize", "0 or leaving it out means Dapr's default",
        10, id="negative-cache-size",
    ),
    pytest.param(
        HEADER + "spec:\n  policies:\n    timeouts: {t: !!binary aGk=}\n",
        "", "!!binary is not supported", 7, id="unsupported-yaml-type",
    ),
    # Fleet budgets (extension; tests/controlplane/spec/test_spec_budgets.py has the rest).
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits: {l: {period: 1s}}
        """), "spec.policies.rateLimits.l.limit", "'limit' is required", 7, id="limit-missing"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 0}
        """), "spec.policies.rateLimits.l.limit", "from 1 to 4294967295", 8, id="limit-zero"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 1.5}
        """), "spec.policies.rateLimits.l.limit", "expected an integer", 8, id="limit-float"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, period: 0}
        """), "spec.policies.rateLimits.l.period", "period must be greater than zero", 8,
        id="period-zero"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, period: 5x}
        """), "spec.policies.rateLimits.l.period", "unknown unit 'x'", 8, id="period-bad-unit"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, burst: -1}
        """), "spec.policies.rateLimits.l.burst", "calls at once after a quiet spell", 8,
        id="burst-negative"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, scope: cluster}
        """), "spec.policies.rateLimits.l.scope", "accepted: app, fleet", 8, id="scope-unknown"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, whenExceeded: wiat}
        """), "spec.policies.rateLimits.l.whenExceeded", "did you mean 'wait'", 8,
        id="when-exceeded-typo"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, maxWait: 1s}
        """), "spec.policies.rateLimits.l.maxWait", "applies only to whenExceeded: wait", 8,
        id="max-wait-without-wait"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, whenExceeded: wait, maxWait: "0"}
        """), "spec.policies.rateLimits.l.maxWait", "maxWait must be greater than zero", 8,
        id="max-wait-zero"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, countRetries: "yes"}
        """), "spec.policies.rateLimits.l.countRetries", "expected true or false", 8,
        id="count-retries-not-boolean"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits:
              l: {limit: 5, burts: 2}
        """), "spec.policies.rateLimits.l.burts", "did you mean 'burst'", 8,
        id="rate-limit-unknown-field"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimits: {l: 5}
        """), "spec.policies.rateLimits.l", "expected a rate limit policy", 7,
        id="rate-limit-not-a-mapping"),
    pytest.param(_spec("""\
        spec:
          policies:
            retryBudgets:
              b: {ratio: 0}
        """), "spec.policies.retryBudgets.b.ratio", "must be above 0 and at most 1", 8,
        id="ratio-zero"),
    pytest.param(_spec("""\
        spec:
          policies:
            retryBudgets:
              b: {ratio: 1.5}
        """), "spec.policies.retryBudgets.b.ratio", "ratio 1.5 must be above 0", 8,
        id="ratio-above-one"),
    pytest.param(_spec("""\
        spec:
          policies:
            retryBudgets:
              b: {ratio: "20%"}
        """), "spec.policies.retryBudgets.b.ratio", "expected a number", 8, id="ratio-string"),
    pytest.param(_spec("""\
        spec:
          policies:
            retryBudgets:
              b: {window: 0s}
        """), "spec.policies.retryBudgets.b.window", "window must be greater than zero", 8,
        id="window-zero"),
    pytest.param(_spec("""\
        spec:
          policies:
            retryBudgets:
              b: {minRetriesPerSecond: -1}
        """), "spec.policies.retryBudgets.b.minRetriesPerSecond", "must be 0 or more", 8,
        id="floor-negative"),
    pytest.param(_spec("""\
        spec:
          policies:
            retryBudgets:
              b: {minRetriesPerSec: 1}
        """), "spec.policies.retryBudgets.b.minRetriesPerSec",
        "did you mean 'minRetriesPerSecond'", 8, id="retry-budget-unknown-field"),
    pytest.param(_spec("""\
        spec:
          policies:
            rateLimit: {}
        """), "spec.policies.rateLimit", "did you mean 'rateLimits'", 7,
        id="policy-kind-typo"),
    pytest.param(_spec("""\
        spec:
          targets:
            apps:
              a: {ratelimit: l}
        """), "spec.targets.apps.a.ratelimit", "did you mean 'rateLimit'", 8,
        id="target-reference-typo"),
    pytest.param(_spec("""\
        spec:
          targets:
            apps:
              a: {rateLimit: 5}
        """), "spec.targets.apps.a.rateLimit", "expected a string", 8,
        id="target-reference-not-a-name"),
]


@pytest.mark.parametrize(("text", "field_path", "fragment", "line"), INVALID)
def test_invalid_spec_is_rejected_with_field_path_message_and_line(
    text: str, field_path: str, fragment: str, line: int
) -> None:
    violations = rejected(text)
    matching = [v for v in violations if v.field_path == field_path and fragment in v.message]
    assert matching, f"no violation at {field_path!r} with {fragment!r} in {violations}"
    assert matching[0].line == line
    assert matching[0].column >= 1
    assert matching[0].source == "test.yaml"


def test_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 25


def test_every_error_is_an_error_and_every_warning_a_warning() -> None:
    text = HEADER + "scopes: [a, a]\nspec:\n  policies: {timeouts: {t: 5x}}\n"
    with pytest.raises(SpecValidationError) as caught:
        parse_documents(text, "test.yaml")
    assert [v.severity for v in caught.value.violations] == [Severity.ERROR]
    [warning] = caught.value.warnings  # found beside the error, reported in the same run
    assert warning.severity is Severity.WARNING and warning.field_path == "scopes[1]"
    assert str(warning).startswith("test.yaml:5:13: scopes[1]: warning: app-id 'a' is listed")


# ---- accepted because Dapr accepts them -------------------------------------------------
# (yaml, field path, message fragment, line): each loads in daprd (dapr/dapr
# pkg/resiliency/resiliency.go), so Fusebox stores it and only warns.
WARNINGS = [
    pytest.param(
        HEADER + "scopes: [checkout, order-processor, checkout]\n",
        "scopes[2]", "app-id 'checkout' is listed twice (first at scopes[0])", 5,
        id="duplicate-scope",
    ),
    pytest.param(
        _spec("""\
            spec:
              targets:
                apps:
                  a: {}
            """),
        "spec.targets.apps.a", "not even the Default… ones", 8, id="target-without-policies",
    ),
    pytest.param(
        _spec("""\
            spec:
              targets:
                apps:
                  a: {circuitBreakerCacheSize: 10}
            """),
        "spec.targets.apps.a", "this target uses no policy", 8, id="target-with-only-a-cache-size",
    ),
    pytest.param(
        _spec("""\
            spec:
              policies:
                retries: {r: {}}
              targets:
                apps:
                  a: {retry: r, timeout: ""}
            """),
        "spec.targets.apps.a.timeout", "an empty policy name means no policy here", 10,
        id="empty-policy-name",
    ),
    pytest.param(
        _spec("""\
            spec:
              targets:
                components:
                  statestore: {}
            """),
        "spec.targets.components.statestore", "sets neither 'outbound' nor 'inbound'", 8,
        id="component-without-direction",
    ),
    pytest.param(
        _spec("""\
            spec:
              targets:
                components:
                  statestore: {inbound: {}}
            """),
        "spec.targets.components.statestore.inbound", "this target uses no policy", 8,
        id="component-direction-without-policies",
    ),
]


@pytest.mark.parametrize(("text", "field_path", "fragment", "line"), WARNINGS)
def test_suspicious_spec_is_accepted_with_a_warning_at_its_field_path_and_line(
    text: str, field_path: str, fragment: str, line: int
) -> None:
    [document] = parse_documents(text, "test.yaml")
    [warning] = document.warnings
    assert (warning.field_path, warning.line, warning.source) == (field_path, line, "test.yaml")
    assert warning.column >= 1 and warning.severity is Severity.WARNING
    assert fragment in warning.message


def test_duplicate_scope_still_scopes_the_spec_once() -> None:
    [document] = parse_documents(HEADER + "scopes: [checkout, checkout]\n")
    assert document.spec.scopes == ("checkout",)
    assert document.spec.applies_to("checkout") and not document.spec.applies_to("other")


def test_empty_entries_of_a_status_code_list_are_skipped_as_dapr_skips_them() -> None:
    [document] = parse_documents(_spec("""\
        spec:
          policies:
            retries:
              r:
                matching: {httpStatusCodes: "500,", gRPCStatusCodes: ",14,,"}
        """))
    retry = document.spec.retries["r"]
    assert retry.http_status_codes == StatusCodes(((500, 500),))
    assert retry.grpc_status_codes == StatusCodes(((14, 14),))
    assert document.warnings == ()


def test_a_cache_size_of_0_means_daprs_default() -> None:
    [document] = parse_documents(_spec("""\
        spec:
          policies:
            retries: {r: {}}
            circuitBreakers: {cb: {}}
          targets:
            apps:
              a: {retry: r, circuitBreakerCacheSize: 0}
            actors:
              Cart: {circuitBreaker: cb, circuitBreakerScope: id, circuitBreakerCacheSize: 0}
        """))
    assert document.spec.apps["a"].circuit_breaker_cache_size is None
    assert document.spec.actors["Cart"].circuit_breaker_cache_size is None
    assert document.warnings == ()


def test_a_policy_name_is_kept_as_written_for_the_check_across_documents() -> None:
    # Dapr's policies are global across documents: whether these names are
    # defined is for fusebox.controlplane.resolve.check_documents to say.
    [document] = parse_documents(_spec("""\
        spec:
          targets:
            apps:
              a: {retry: DaprBuiltInServiceRetries, timeout: definedElsewhere}
        """))
    target = document.spec.apps["a"]
    assert (target.retry, target.timeout) == ("DaprBuiltInServiceRetries", "definedElsewhere")
    assert document.warnings == ()


def test_package_exports_are_sorted_and_importable() -> None:
    import fusebox.controlplane.spec as package

    def isort_style(name: str) -> tuple[int, str]:  # ruff RUF022: constants, classes, rest
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert package.__all__ == sorted(package.__all__, key=isort_style)
    public = {n for n in vars(package) if not n.startswith("_") and n[0].isupper()}
    assert public - {"Any"} <= set(package.__all__)
    for name in package.__all__:
        assert hasattr(package, name), name
