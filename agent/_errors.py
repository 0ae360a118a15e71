"""The agent's exceptions.

Every error the agent raises on its own account derives from ``FuseboxError``,
so ``except agent.FuseboxError`` catches them all::

    FuseboxError
    ├── BreakerOpenError      the breaker rejected the call (open, or half-open and full)
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
