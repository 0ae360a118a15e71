"""Fusebox agent: enforce resiliency policies in-process.

>>> from agent import Agent
>>> with Agent(app_id="checkout", server="127.0.0.1:50051") as fb:  # doctest: +SKIP
...     r = fb.app("order-processor", method="orders").call(post_order, order)
"""

from agent._agent import Agent, AsyncAgent, AsyncTarget, Target
from agent._breaker import (
    BreakerState,
    BreakerStateMachine,
    Counts,
    Transition,
    TransitionCause,
    TripFunction,
)
from agent._classify import (
    Classifier,
    Outcome,
    default_classifier,
    grpc_outcome,
    http_outcome,
    parse_retry_after,
)
from agent._clock import Clock, SystemClock
from agent._errors import BreakerOpenError, FuseboxError, PolicyError, PolicyTimeoutError
from agent._events import FallbackEvent, RetryEvent, StateChangeEvent, TargetStats
from agent._executor import AttemptDeadline, CallFailure, current_attempt_deadline
from agent._live_breaker import Breaker
from agent._policy import FallbackResponse, ResolvedPolicies
from agent._policy_source import PolicySource
from agent._testing import ManualClock, is_testing, set_testing, testing

__all__ = [
    "Agent",
    "AsyncAgent",
    "AsyncTarget",
    "AttemptDeadline",
    "Breaker",
    "BreakerOpenError",
    "BreakerState",
    "BreakerStateMachine",
    "CallFailure",
    "Classifier",
    "Clock",
    "Counts",
    "FallbackEvent",
    "FallbackResponse",
    "FuseboxError",
    "ManualClock",
    "Outcome",
    "PolicyError",
    "PolicySource",
    "PolicyTimeoutError",
    "ResolvedPolicies",
    "RetryEvent",
    "StateChangeEvent",
    "SystemClock",
    "Target",
    "TargetStats",
    "Transition",
    "TransitionCause",
    "TripFunction",
    "current_attempt_deadline",
    "default_classifier",
    "grpc_outcome",
    "http_outcome",
    "is_testing",
    "parse_retry_after",
    "set_testing",
    "testing",
]
