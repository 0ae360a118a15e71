"""``spec.policies``: timeouts, retries, circuit breakers and (extension) fallbacks.

The fleet budgets (extensions ``rateLimits`` and ``retryBudgets``) are read
by ``fusebox.controlplane.spec.budgets`` with the same helpers.

Each reader returns the policies that are valid; invalid ones are left out
after their violations are recorded (the whole document is rejected anyway,
and targets are checked against the *names* written, so one bad policy does
not also produce "unknown policy" errors).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fusebox.agent.policy import (
    DEFAULT_TRIP,
    BackoffKind,
    BreakerQuorum,
    CircuitBreakerPolicy,
    FallbackPolicy,
    FallbackResponse,
    RetryPolicy,
    StatusCodes,
    TimeoutPolicy,
)
from fusebox.agent.trip import TripError, did_you_mean, parse_trip
from fusebox.controlplane.spec.fields import UINT32_MAX, DocumentCheck, describe
from fusebox.controlplane.spec.loader import Path

POLICY_KINDS = (
    "timeouts", "retries", "circuitBreakers", "fallbacks",
    # Fusebox extensions (fleet budgets, docs/budgets.md):
    "rateLimits", "retryBudgets",
)

RETRY_FIELDS = (
    "policy",
    "duration",
    "maxInterval",
    "maxRetries",
    "matching",
    # Fusebox extensions:
    "initialInterval",
    "multiplier",
    "randomizationFactor",
    "maxElapsedTime",
    "honorRetryAfter",
)
EXPONENTIAL_ONLY_FIELDS = ("initialInterval", "multiplier", "randomizationFactor", "maxElapsedTime")
MATCHING_FIELDS = ("httpStatusCodes", "gRPCStatusCodes")
BREAKER_FIELDS = (
    "maxRequests",
    "interval",
    "timeout",
    "trip",
    # Fusebox extension:
    "quorum",
)
QUORUM_FIELDS = ("minInstances", "minShare")
FALLBACK_FIELDS = ("response", "function", "matching")
RESPONSE_FIELDS = ("status", "headers", "body")

DEFAULT_BREAKER_TIMEOUT = 60.0


def _named_entries(check: DocumentCheck, value: Any, path: Path) -> Mapping[str, Any]:
    """A policy section: its entries by name (none, after a violation, if it is not a mapping)."""
    section = check.mapping(value, path, "a mapping of policy names to policies")
    return section or {}


P = TypeVar("P")


def read_named(
    check: DocumentCheck, value: Any, path: Path,
    read_one: Callable[[DocumentCheck, str, Any, Path], P | None],
) -> dict[str, P]:
    """Every valid policy of a section, read by ``read_one(check, name, raw, path)``."""
    result: dict[str, P] = {}
    for name, raw in _named_entries(check, value, path).items():
        policy = read_one(check, name, raw, (*path, name))
        if policy is not None:
            result[name] = policy
    return result


def failed_since(check: DocumentCheck, mark: int) -> bool:
    """Whether a violation was recorded since ``mark`` (``len(check.violations)`` then)."""
    return len(check.violations) > mark


def read_timeouts(check: DocumentCheck, value: Any, path: Path) -> dict[str, TimeoutPolicy]:
    """``timeouts: {name: duration}``; 0 means no timeout, negative is an error."""
    result: dict[str, TimeoutPolicy] = {}
    for name, raw in _named_entries(check, value, path).items():
        seconds = check.duration(raw, (*path, name))
        if seconds is not None:
            result[name] = TimeoutPolicy(name=name, duration=seconds)
    return result


def read_matching(
    check: DocumentCheck, value: Any, path: Path
) -> tuple[StatusCodes, StatusCodes]:
    """``matching: {httpStatusCodes, gRPCStatusCodes}``; absent = every error matches."""
    matching = check.mapping(value, path)
    if not matching:
        return StatusCodes(), StatusCodes()
    check.known_keys(matching, path, MATCHING_FIELDS)
    http = grpc = None
    if matching.get("httpStatusCodes") is not None:
        http = check.status_codes(matching["httpStatusCodes"], (*path, "httpStatusCodes"), "http")
    if matching.get("gRPCStatusCodes") is not None:
        grpc = check.status_codes(matching["gRPCStatusCodes"], (*path, "gRPCStatusCodes"), "grpc")
    return http or StatusCodes(), grpc or StatusCodes()


def read_retries(check: DocumentCheck, value: Any, path: Path) -> dict[str, RetryPolicy]:
    return read_named(check, value, path, _read_retry)


def _read_retry(check: DocumentCheck, name: str, raw: Any, path: Path) -> RetryPolicy | None:
    mark = len(check.violations)
    fields = check.mapping(raw, path, "a retry policy (a mapping)")
    if fields is None:
        return None
    check.known_keys(fields, path, RETRY_FIELDS)
    options: dict[str, Any] = {}

    backoff = BackoffKind.CONSTANT
    if fields.get("policy") is not None:
        text = check.string(fields["policy"], (*path, "policy"))
        if text is not None:
            try:
                backoff = BackoffKind(text.lower())
            except ValueError:
                check.fail(
                    (*path, "policy"),
                    f"unknown retry policy type {text!r}"
                    f"{did_you_mean(text, ('constant', 'exponential'))}; "
                    "accepted: constant, exponential",
                )
    options["backoff"] = backoff

    for key, option in (
        ("duration", "duration"),
        ("maxInterval", "max_interval"),
        ("initialInterval", "initial_interval"),
        ("maxElapsedTime", "max_elapsed_time"),
    ):
        if fields.get(key) is not None:
            options[option] = check.duration(fields[key], (*path, key))
    if options.get("max_interval") == 0:
        check.fail((*path, "maxInterval"), "maxInterval must be greater than zero")
    if options.get("initial_interval") == 0:
        check.fail((*path, "initialInterval"), "initialInterval must be greater than zero")

    if fields.get("maxRetries") is not None:
        options["max_retries"] = check.integer(
            fields["maxRetries"],
            (*path, "maxRetries"),
            minimum=-1,
            rule="must be -1 (retry without limit) or a number of retries (0 or more)",
        )
    if fields.get("multiplier") is not None:
        multiplier = check.number(fields["multiplier"], (*path, "multiplier"))
        if multiplier is not None and multiplier < 1:
            check.fail(
                (*path, "multiplier"),
                f"multiplier {multiplier:g} must be at least 1 (1 keeps the interval constant)",
            )
        options["multiplier"] = multiplier
    if fields.get("randomizationFactor") is not None:
        factor = check.number(fields["randomizationFactor"], (*path, "randomizationFactor"))
        if factor is not None and not 0 <= factor <= 1:
            check.fail(
                (*path, "randomizationFactor"),
                f"randomizationFactor {factor:g} must be between 0 and 1",
            )
        options["randomization_factor"] = factor
    if fields.get("honorRetryAfter") is not None:
        options["honor_retry_after"] = check.boolean(
            fields["honorRetryAfter"], (*path, "honorRetryAfter")
        )
    if backoff is BackoffKind.CONSTANT:
        for key in EXPONENTIAL_ONLY_FIELDS:
            if key in fields:
                check.fail(
                    (*path, key),
                    f"{key} applies only to exponential retries; "
                    "set policy: exponential or remove it",
                    at_key=True,
                )
    if "matching" in fields:
        http, grpc = read_matching(check, fields["matching"], (*path, "matching"))
        options["http_status_codes"], options["grpc_status_codes"] = http, grpc

    if failed_since(check, mark):
        return None
    return RetryPolicy(name=name, **{k: v for k, v in options.items() if v is not None})


def read_circuit_breakers(
    check: DocumentCheck, value: Any, path: Path
) -> dict[str, CircuitBreakerPolicy]:
    return read_named(check, value, path, _read_breaker)


def _read_breaker(
    check: DocumentCheck, name: str, raw: Any, path: Path
) -> CircuitBreakerPolicy | None:
    mark = len(check.violations)
    fields = check.mapping(raw, path, "a circuit breaker policy (a mapping)")
    if fields is None:
        return None
    check.known_keys(fields, path, BREAKER_FIELDS)
    max_requests: int | None = 1
    if fields.get("maxRequests") is not None:
        max_requests = check.integer(
            fields["maxRequests"],
            (*path, "maxRequests"),
            minimum=0,
            maximum=UINT32_MAX,
            rule=f"must be between 0 and {UINT32_MAX} (0 means 1)",
        )
        max_requests = max_requests or 1  # Dapr (gobreaker): 0 admits one request
    interval: float | None = 0.0
    if fields.get("interval") is not None:
        interval = check.duration(fields["interval"], (*path, "interval"))
    timeout: float | None = DEFAULT_BREAKER_TIMEOUT
    if fields.get("timeout") is not None:
        timeout = check.duration(fields["timeout"], (*path, "timeout"), allow_negative=True)
        if timeout is not None and timeout <= 0:
            timeout = DEFAULT_BREAKER_TIMEOUT  # gobreaker: <= 0 means 60s
    trip = DEFAULT_TRIP
    if "trip" in fields:
        trip_text = check.string(fields["trip"], (*path, "trip"))
        if trip_text is not None:
            try:
                parse_trip(trip_text)
                trip = trip_text.strip()
            except TripError as exc:
                check.fail(
                    (*path, "trip"),
                    f"invalid trip expression {trip_text!r}: {exc.message} "
                    f"(at character {exc.position + 1})",
                )
    quorum = None
    if "quorum" in fields:
        quorum = _read_quorum(check, fields["quorum"], (*path, "quorum"))
    if failed_since(check, mark) or max_requests is None or interval is None or timeout is None:
        return None
    return CircuitBreakerPolicy(
        name=name,
        max_requests=max_requests,
        interval=interval,
        timeout=timeout,
        trip=trip,
        quorum=quorum,
    )


def _read_quorum(check: DocumentCheck, value: Any, path: Path) -> BreakerQuorum | None:
    """``quorum: {minInstances, minShare}`` (extension): at least one of the two."""
    fields = check.mapping(value, path, "a quorum (a mapping with minInstances, minShare)")
    if fields is None:
        return None
    mark = len(check.violations)
    check.known_keys(fields, path, QUORUM_FIELDS)
    if not any(fields.get(key) is not None for key in QUORUM_FIELDS):
        if failed_since(check, mark):
            return None  # a misspelt field: its did-you-mean says it all
        check.fail(
            path,
            "a quorum needs minInstances (distinct failing instances, 1 or more) and/or "
            "minShare (share of the reporting instances that failed, above 0 and at most 1)",
        )
        return None
    min_instances: int | None = 0
    if fields.get("minInstances") is not None:
        min_instances = check.integer(
            fields["minInstances"],
            (*path, "minInstances"),
            minimum=1,
            maximum=UINT32_MAX,
            rule=f"must be a number of instances from 1 to {UINT32_MAX}",
        )
    min_share: float | None = 0.0
    if fields.get("minShare") is not None:
        min_share = check.number(fields["minShare"], (*path, "minShare"))
        if min_share is not None and not 0 < min_share <= 1:
            check.fail(
                (*path, "minShare"),
                f"minShare {min_share:g} must be above 0 and at most 1 "
                "(0.5: at least half of the reporting instances failed)",
            )
            min_share = None
    if min_instances is None or min_share is None:
        return None
    return BreakerQuorum(min_instances=min_instances, min_share=min_share)


def read_fallbacks(check: DocumentCheck, value: Any, path: Path) -> dict[str, FallbackPolicy]:
    return read_named(check, value, path, _read_fallback)


def _read_fallback(check: DocumentCheck, name: str, raw: Any, path: Path) -> FallbackPolicy | None:
    mark = len(check.violations)
    fields = check.mapping(raw, path, "a fallback policy (a mapping)")
    if fields is None:
        return None
    check.known_keys(fields, path, FALLBACK_FIELDS)
    has_response, has_function = fields.get("response") is not None, "function" in fields
    if has_response == has_function:
        check.fail(
            path,
            "a fallback needs exactly one of 'response' (a static response) or "
            "'function' (the name of a callable registered in the agent)"
            + ("; found both" if has_response else ""),
        )
    response = function = None
    if has_response:
        response = _read_response(check, fields["response"], (*path, "response"))
    if has_function:
        function = check.string(fields["function"], (*path, "function"))
        if function is not None and any(ch.isspace() for ch in function):
            check.fail((*path, "function"), f"function name {function!r} contains spaces")
    http, grpc = read_matching(check, fields.get("matching"), (*path, "matching"))
    if failed_since(check, mark):
        return None
    return FallbackPolicy(
        name=name,
        response=response,
        function=function,
        http_status_codes=http,
        grpc_status_codes=grpc,
    )


def _read_response(check: DocumentCheck, value: Any, path: Path) -> FallbackResponse | None:
    fields = check.mapping(value, path, "a response (a mapping with status, headers, body)")
    if fields is None:
        return None
    check.known_keys(fields, path, RESPONSE_FIELDS)
    status: int | None = 200
    if fields.get("status") is not None:
        status = check.integer(
            fields["status"], (*path, "status"), minimum=100, maximum=599,
            rule="HTTP status codes are 100-599",
        )
    headers: list[tuple[str, str]] = []
    header_map = check.mapping(fields.get("headers"), (*path, "headers"))
    for header, header_value in (header_map or {}).items():
        if not isinstance(header_value, str):
            check.fail(
                (*path, "headers", header),
                f"header values must be strings, found {describe(header_value)} "
                "(quote it in YAML)",
            )
        elif not header.strip() or any(ch.isspace() or ch == ":" for ch in header):
            check.fail((*path, "headers", header), f"{header!r} is not a valid header name")
        else:
            headers.append((header, header_value))
    body = ""
    if fields.get("body") is not None:
        body = check.string(fields["body"], (*path, "body"), allow_empty=True) or ""
    if status is None:
        return None
    return FallbackResponse(status=status, headers=tuple(sorted(headers)), body=body.encode())
