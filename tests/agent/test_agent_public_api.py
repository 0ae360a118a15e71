"""The package root: what a service needs, ``__all__`` complete and sorted; the rest in
named modules."""

from __future__ import annotations

import importlib

import fusebox.agent as agent
from fusebox.agent import (
    BreakerOpenError,
    FuseboxError,
    PolicyError,
    PolicyTimeoutError,
    RateLimitedError,
)


def test_all_is_sorted() -> None:
    assert agent.__all__ == sorted(agent.__all__)


def test_all_lists_every_public_name_and_only_existing_ones() -> None:
    public = {
        name for name, value in vars(agent).items()
        if not name.startswith("_") and not isinstance(value, type(agent))
        and getattr(value, "__module__", "").startswith("fusebox.agent")
    }
    assert public == set(agent.__all__)
    assert all(hasattr(agent, name) for name in agent.__all__)


def test_a_service_imports_what_it_needs_from_the_root() -> None:
    for name in ("Agent", "AsyncAgent", "Target", "AsyncTarget", "BreakerOpenError",
                 "PolicyTimeoutError", "PolicyError", "FuseboxError", "FallbackResponse",
                 "ResolvedPolicies", "CallFailure", "PolicySource", "BreakerState",
                 "current_attempt_deadline", "RateLimitedError"):
        assert name in agent.__all__


def test_internals_live_in_named_modules_not_at_the_root() -> None:
    homes = {
        "fusebox.agent.testing": ("set_testing", "testing", "is_testing", "ManualClock"),
        "fusebox.agent.events": ("StateChangeEvent", "RetryEvent", "FallbackEvent",
                                 "TargetStats", "ChangeOrigin"),
        "fusebox.agent.classify": ("Outcome", "Classifier", "http_outcome", "grpc_outcome",
                                   "parse_retry_after", "default_classifier"),
        "fusebox.agent.breaker": ("BreakerStateMachine", "Counts", "TransitionCause",
                                  "BreakerOverride"),
        "fusebox.agent.breaker_key": ("BreakerKey",),
        "fusebox.agent.budget": ("BudgetKey", "BudgetKind", "BudgetShare", "budget_key",
                                 "fallback_share"),
        "fusebox.agent.wire_enums": ("STATE_TO_PB", "OVERRIDE_TO_PB", "CAUSE_TO_PB",
                                     "TARGET_KIND_TO_PB"),
        "fusebox.agent.clock": ("Clock", "SystemClock"),
    }
    for module, names in homes.items():
        found = importlib.import_module(module)
        for name in names:
            assert hasattr(found, name), (module, name)
            assert name not in agent.__all__, name


def test_errors_form_one_tree() -> None:
    for error in (BreakerOpenError, PolicyTimeoutError, PolicyError, RateLimitedError):
        assert issubclass(error, FuseboxError)
    assert issubclass(PolicyTimeoutError, TimeoutError)
    assert issubclass(PolicyError, ValueError)
