"""The package root: every public name re-exported, ``__all__`` complete and sorted."""

from __future__ import annotations

import agent
from agent import BreakerOpenError, FuseboxError, PolicyError, PolicyTimeoutError


def test_all_is_sorted() -> None:
    assert agent.__all__ == sorted(agent.__all__)


def test_all_lists_every_public_name_and_only_existing_ones() -> None:
    public = {
        name for name, value in vars(agent).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("agent")
    }
    assert public <= set(agent.__all__)
    assert all(hasattr(agent, name) for name in agent.__all__)


def test_errors_form_one_tree() -> None:
    for error in (BreakerOpenError, PolicyTimeoutError, PolicyError):
        assert issubclass(error, FuseboxError)
    assert issubclass(PolicyTimeoutError, TimeoutError)
    assert issubclass(PolicyError, ValueError)
