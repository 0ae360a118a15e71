"""The agent's exceptions.

Every error the agent raises on its own account derives from ``FuseboxError``,
so ``except agent.FuseboxError`` catches them all::

    FuseboxError
    ├── BreakerOpenError      the breaker rejected the call (open, or half-open and full)
    ├── RateLimitedError      the target's rate limit refused the call (no token, or not in maxWait)
    ├── PolicyTimeoutError    an attempt ran past its timeout (also a ``TimeoutError``)
    └── PolicyError           policies this agent cannot apply (also a ``ValueError``)

Exceptions raised by the guarded callable itself are never wrapped: after the
last attempt the callable's own exception is re-raised unchanged (with a note
saying how many attempts were made), so ``except requests.ConnectionError``
keeps working around a guarded call.
"""

from __future__ import annotations


class FuseboxError(Exception):
    """Base class of every error raised by the Fusebox agent."""


class BreakerOpenError(FuseboxError):
    """The circuit breaker ``breaker`` rejected the call without running it.

    ``state`` is ``"open"``, or ``"half-open"`` when the half-open breaker has
    already admitted its ``maxRequests`` probes. Retries stop at this error.
    """

    def __init__(self, breaker: str, state: str) -> None:
        self.breaker = breaker
        self.state = state
        if state == "open":
            detail = "circuit breaker is open"
        else:
            detail = "too many requests while the circuit breaker is half-open"
        super().__init__(f'{detail}: breaker "{breaker}"')


class RateLimitedError(FuseboxError):
    """The rate limit ``policy`` refused a call to ``target`` without running it.

    ``retry_after`` is how many seconds this instance's share needs before it
    admits a call (inf: its share is zero for now). Raised only for a call's
    first attempt: a retry the limit refuses is skipped and the call ends
    with its last failure. A fallback applies to it as to a breaker's rejection.
    """

    def __init__(self, target: str, policy: str, retry_after: float) -> None:
        self.target = target
        self.policy = policy
        self.retry_after = retry_after
        when = (f"admits the next call in {retry_after:.3g}s" if retry_after != float("inf")
                else "is zero for now")
        super().__init__(f'rate limit "{policy}" exceeded: {target} refused without calling '
                         f"(this instance's share {when})")


class PolicyTimeoutError(FuseboxError, TimeoutError):
    """An attempt on ``target`` did not finish within ``timeout`` seconds."""

    def __init__(self, target: str, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        super().__init__(f"timeout: {target} did not complete within {timeout:g}s")


class PolicyError(FuseboxError, ValueError):
    """Policies that this agent cannot apply (bad trip expression, unknown fallback).

    A ``ValueError`` so that the policy link NACKs the snapshot that caused it;
    the previous policies stay in force.
    """
