"""Fusebox agent: enforce resiliency policies in-process.

>>> from fusebox.agent import Agent
>>> with Agent(app_id="checkout", server="127.0.0.1:50051") as fb:  # doctest: +SKIP
...     r = fb.app("order-processor", method="orders").call(post_order, order)

What a service needs is here. The rest lives in named modules:
``fusebox.agent.testing`` (testing switches, a manual clock),
``fusebox.agent.events`` (the hooks' event types and counters),
``fusebox.agent.classify`` (outcome classifiers), ``fusebox.agent.clock``,
``fusebox.agent.policy`` (the policy model), ``fusebox.agent.breaker`` (the
state machine), ``fusebox.agent.trip`` (trip expressions) and
``fusebox.agent.breaker_key`` (a breaker's identity) and
``fusebox.agent.budget`` (a fleet budget's identity and shares).
"""

from fusebox.agent._agent import Agent, AsyncAgent, AsyncTarget, Target
from fusebox.agent._errors import (
    BreakerOpenError,
    FuseboxError,
    PolicyError,
    PolicyTimeoutError,
    RateLimitedError,
)
from fusebox.agent._executor import AttemptDeadline, CallFailure, current_attempt_deadline
from fusebox.agent._policy_source import PolicySource
from fusebox.agent.breaker import BreakerState
from fusebox.agent.policy import FallbackResponse, ResolvedPolicies

__all__ = [
    "Agent",
    "AsyncAgent",
    "AsyncTarget",
    "AttemptDeadline",
    "BreakerOpenError",
    "BreakerState",
    "CallFailure",
    "FallbackResponse",
    "FuseboxError",
    "PolicyError",
    "PolicySource",
    "PolicyTimeoutError",
    "RateLimitedError",
    "ResolvedPolicies",
    "Target",
    "current_attempt_deadline",
]
