"""Drive a sync ``Agent`` or an ``AsyncAgent`` through one interface, so tests mirror."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from fusebox.agent import Agent, AsyncAgent
from fusebox.agent.classify import Classifier
from fusebox.agent.policy import ResolvedPolicies, TargetKind, TargetPolicy
from fusebox.agent.testing import ManualClock

MODES = ("sync", "async")


class Script:
    """A callable that plays a list of outcomes: an exception is raised, anything else returned.

    The last outcome repeats. ``calls`` counts the invocations; the sync and the
    async flavours share it.
    """

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes) or [None]
        self.calls = 0

    def _next(self) -> Any:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def sync(self) -> Any:
        return self._next()

    async def coro(self) -> Any:
        return self._next()


def policies(*targets: TargetPolicy) -> ResolvedPolicies:
    return ResolvedPolicies(namespace="default", app_id="checkout", targets=targets)


def app_target(name: str = "order-processor", **kwargs: Any) -> TargetPolicy:
    return TargetPolicy(TargetKind.APP, name, spec_namespace="default", spec_name="resiliency",
                        **kwargs)


class Harness:
    """One agent of either flavour, a manual clock, and ``call`` for both."""

    def __init__(self, mode: str, resolved: ResolvedPolicies | None = None, **kwargs: Any):
        self.mode = mode
        self.clock = ManualClock()
        cls = Agent if mode == "sync" else AsyncAgent
        self.fb: Agent | AsyncAgent = cls(app_id="checkout", policies=resolved,
                                         clock=self.clock, **kwargs)

    def call(self, script: Script, *, app: str = "order-processor", method: str | None = "orders",
             classifier: Classifier | None = None) -> Any:
        handle = self.fb.app(app, method=method, classifier=classifier)
        if self.mode == "sync":
            return handle.call(script.sync)
        return asyncio.run(handle.call(script.coro))

    def call_fn(self, sync_fn: Callable[[], Any], async_fn: Callable[[], Any], *,
                app: str = "order-processor", method: str | None = "orders") -> Any:
        handle = self.fb.app(app, method=method)
        if self.mode == "sync":
            return handle.call(sync_fn)
        return asyncio.run(handle.call(async_fn))

    def outcomes(self, script: Script, n: int, **kwargs: Any) -> Sequence[Any]:
        """Make ``n`` calls; each result, or the exception it raised."""
        out: list[Any] = []
        for _ in range(n):
            try:
                out.append(self.call(script, **kwargs))
            except Exception as exc:
                out.append(exc)
        return out
