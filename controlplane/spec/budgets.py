"""``spec.policies.rateLimits`` and ``spec.policies.retryBudgets`` (Fusebox extensions).

Fleet budgets (docs/budgets.md): a rate limit bounds the calls to a target
across every instance of the caller (or of every caller); a retry budget
bounds the retries to a ratio of first attempts plus a fleet-wide floor.
Like the other readers, each returns the valid policies and records every
violation, with what would be accepted.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

from fusebox.agent.policy import RateLimitPolicy, RateLimitScope, RetryBudgetPolicy, WhenExceeded
from fusebox.agent.trip import did_you_mean
from fusebox.controlplane.spec.fields import UINT32_MAX, DocumentCheck
from fusebox.controlplane.spec.loader import Path
from fusebox.controlplane.spec.policies import failed_since, read_named

RATE_LIMIT_FIELDS = ("limit", "period", "burst", "scope", "whenExceeded", "maxWait",
                     "countRetries")
RETRY_BUDGET_FIELDS = ("ratio", "window", "minRetriesPerSecond")

E = TypeVar("E", bound=enum.Enum)


def read_rate_limits(check: DocumentCheck, value: Any, path: Path) -> dict[str, RateLimitPolicy]:
    return read_named(check, value, path, _read_rate_limit)


def read_retry_budgets(
    check: DocumentCheck, value: Any, path: Path
) -> dict[str, RetryBudgetPolicy]:
    return read_named(check, value, path, _read_retry_budget)


def _read_rate_limit(
    check: DocumentCheck, name: str, raw: Any, path: Path
) -> RateLimitPolicy | None:
    mark = len(check.violations)
    fields = check.mapping(raw, path, "a rate limit policy (a mapping with limit, period, ...)")
    if fields is None:
        return None
    check.known_keys(fields, path, RATE_LIMIT_FIELDS)
    options: dict[str, Any] = {}
    if check.required(fields, path, "limit"):
        options["limit"] = _count(check, fields["limit"], (*path, "limit"), "calls per period")
    if fields.get("period") is not None:
        options["period"] = _positive_duration(check, fields["period"], (*path, "period"))
    if fields.get("burst") is not None:
        options["burst"] = _count(check, fields["burst"], (*path, "burst"),
                                  "calls at once after a quiet spell")
    if fields.get("scope") is not None:
        options["scope"] = _choice(check, fields["scope"], (*path, "scope"), RateLimitScope)
    when: WhenExceeded | None = WhenExceeded.REJECT
    if fields.get("whenExceeded") is not None:
        when = _choice(check, fields["whenExceeded"], (*path, "whenExceeded"), WhenExceeded)
        options["when_exceeded"] = when
    if "maxWait" in fields and when is not None:  # None: its own error says it all
        if when is not WhenExceeded.WAIT:
            check.fail(
                (*path, "maxWait"),
                "maxWait applies only to whenExceeded: wait; set whenExceeded: wait or remove it",
                at_key=True,
            )
        elif fields["maxWait"] is not None:
            options["max_wait"] = _positive_duration(check, fields["maxWait"], (*path, "maxWait"))
    if fields.get("countRetries") is not None:
        options["count_retries"] = check.boolean(fields["countRetries"], (*path, "countRetries"))
    if failed_since(check, mark):
        return None
    return RateLimitPolicy(name=name, **options)


def _read_retry_budget(
    check: DocumentCheck, name: str, raw: Any, path: Path
) -> RetryBudgetPolicy | None:
    mark = len(check.violations)
    fields = check.mapping(raw, path, "a retry budget policy (a mapping with ratio, window, "
                                      "minRetriesPerSecond)")
    if fields is None:
        return None
    check.known_keys(fields, path, RETRY_BUDGET_FIELDS)
    options: dict[str, Any] = {}
    if fields.get("ratio") is not None:
        ratio = check.number(fields["ratio"], (*path, "ratio"))
        if ratio is not None and not 0 < ratio <= 1:
            check.fail((*path, "ratio"), f"ratio {ratio:g} must be above 0 and at most 1 "
                                         "(0.2: retries up to a fifth of first attempts)")
        options["ratio"] = ratio
    if fields.get("window") is not None:
        options["window"] = _positive_duration(check, fields["window"], (*path, "window"))
    if fields.get("minRetriesPerSecond") is not None:
        floor = check.number(fields["minRetriesPerSecond"], (*path, "minRetriesPerSecond"))
        if floor is not None and floor < 0:
            check.fail((*path, "minRetriesPerSecond"),
                       f"minRetriesPerSecond {floor:g} must be 0 or more (retries per second "
                       "allowed to the whole fleet whatever the ratio)")
        options["min_retries_per_second"] = floor
    if failed_since(check, mark):
        return None
    return RetryBudgetPolicy(name=name, **options)


def _count(check: DocumentCheck, value: Any, path: Path, what: str) -> int | None:
    return check.integer(value, path, minimum=1, maximum=UINT32_MAX,
                         rule=f"must be a number of {what} from 1 to {UINT32_MAX}")


def _positive_duration(check: DocumentCheck, value: Any, path: Path) -> float | None:
    seconds = check.duration(value, path)
    if seconds == 0:
        check.fail(path, f"{path[-1]} must be greater than zero")
        return None
    return seconds


def _choice(check: DocumentCheck, value: Any, path: Path, choices: type[E]) -> E | None:
    text = check.string(value, path)
    if text is None:
        return None
    accepted = tuple(str(member.value) for member in choices)
    try:
        return choices(text)
    except ValueError:
        check.fail(path, f"unknown {path[-1]} {text!r}{did_you_mean(text, accepted)}; "
                         f"accepted: {', '.join(accepted)}")
        return None
