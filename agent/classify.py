"""Outcome classification: did a call succeed, and what status did it carry?

Exceptions are failures; results are successes unless a classifier says
otherwise. Integrations build their classifiers from ``http_outcome`` (Dapr's
rule: status < 200 or > 399 fails) and ``grpc_outcome`` (non-OK fails), and
parse ``Retry-After`` with ``parse_retry_after``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fusebox.agent.policy import FallbackPolicy, RetryPolicy, StatusCodes


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, as far as the policies care.

    ``http_status`` / ``grpc_code`` let retry and fallback ``matching`` decide;
    ``retry_after`` (seconds) is honoured by retry policies that ask for it.
    """

    success: bool
    http_status: int | None = None
    grpc_code: int | None = None
    retry_after: float | None = None


#: ``classifier(result, error) -> Outcome``: exactly one of ``result``/``error``
#: is meaningful (``error`` is ``None`` when the callable returned).
Classifier = Callable[[Any, BaseException | None], Outcome]

SUCCESS = Outcome(True)
FAILURE = Outcome(False)


def default_classifier(result: Any, error: BaseException | None) -> Outcome:
    """Exceptions fail, results succeed."""
    return SUCCESS if error is None else FAILURE


def http_outcome(status: int, retry_after: float | None = None) -> Outcome:
    """Dapr's HTTP rule: a status below 200 or above 399 is a failure."""
    return Outcome(200 <= status <= 399, http_status=status, retry_after=retry_after)


def grpc_outcome(code: int, retry_after: float | None = None) -> Outcome:
    """Dapr's gRPC rule: any code but OK (0) is a failure."""
    return Outcome(code == 0, grpc_code=code, retry_after=retry_after)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; ``None`` if invalid.

    >>> parse_retry_after("7")
    7.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now())


def _codes_match(codes: StatusCodes, code: int | None) -> bool | None:
    if code is None:
        return None
    return not codes or code in codes


def _matches(http: StatusCodes, grpc: StatusCodes, outcome: Outcome) -> bool:
    # A failure without a status (an exception, a timeout, an open breaker) always matches.
    by_http = _codes_match(http, outcome.http_status)
    if by_http is not None:
        return by_http
    by_grpc = _codes_match(grpc, outcome.grpc_code)
    return True if by_grpc is None else by_grpc


def retry_matches(policy: RetryPolicy, outcome: Outcome) -> bool:
    """Whether a failure is retried under the policy's ``matching`` lists (empty: all)."""
    return _matches(policy.http_status_codes, policy.grpc_status_codes, outcome)


def fallback_matches(policy: FallbackPolicy, outcome: Outcome) -> bool:
    """Whether a final failure triggers the fallback (same rules as retry ``matching``)."""
    return _matches(policy.http_status_codes, policy.grpc_status_codes, outcome)
