"""Actor ``circuitBreakerScope`` as daprd's code does it.

daprd (pkg/resiliency/resiliency.go, ``Resiliency.ActorPreLockPolicy``) builds
one breaker per actor call: keyed by the actor type for scope ``type``, by
``<type>-<id>`` for any other scope. ``both`` is parsed but keyed exactly as
``id`` (its constant is marked "Usage is TODO"); no two breakers are ever
combined. A default actor breaker (``DefaultActorCircuitBreakerPolicy``, no
target for the type) is keyed by the type.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from fusebox.agent import Agent, AsyncAgent, BreakerOpenError, BreakerState
from fusebox.agent.policy import (
    BreakerScope,
    CircuitBreakerPolicy,
    ResolvedPolicies,
    RetryPolicy,
    TargetKind,
    TargetPolicy,
)
from fusebox.agent.testing import ManualClock
from tests.agent.harness import MODES, Script

OPEN_AT_SECOND_FAILURE = CircuitBreakerPolicy("cb", trip="consecutiveFailures >= 2")


def actor_target(scope: BreakerScope | None, **kwargs: Any) -> TargetPolicy:
    return TargetPolicy(TargetKind.ACTOR, "cart", circuit_breaker=OPEN_AT_SECOND_FAILURE,
                        circuit_breaker_scope=scope, spec_namespace="default",
                        spec_name="resiliency", **kwargs)


class Actors:
    """One agent of either flavour; ``call(id, script)`` calls actor ``cart/<id>``."""

    def __init__(self, mode: str, *targets: TargetPolicy) -> None:
        self.mode = mode
        cls = Agent if mode == "sync" else AsyncAgent
        self.fb: Agent | AsyncAgent = cls(
            app_id="checkout", clock=ManualClock(),
            policies=ResolvedPolicies(namespace="default", app_id="checkout", targets=targets))

    def call(self, actor_id: str, script: Script) -> Any:
        """The call's result, or the exception it raised."""
        handle = self.fb.actor("cart", actor_id)
        try:
            if self.mode == "sync":
                return handle.call(script.sync)
            return asyncio.run(handle.call(script.coro))
        except Exception as exc:
            return exc

    def breakers(self) -> dict[str, BreakerState]:
        return self.fb.breaker_states()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("scope", "breaker", "other_actor_rejected"), [
    (BreakerScope.TYPE, "cart", True),
    (BreakerScope.ID, "cart-42", False),
    (BreakerScope.BOTH, "cart-42", False),
])
def test_one_breaker_guards_an_actor_call_keyed_as_daprd_keys_it(
    mode: str, scope: BreakerScope, breaker: str, other_actor_rejected: bool
) -> None:
    actors = Actors(mode, actor_target(scope))
    failing = Script(ConnectionError("cart 42 down"))
    actors.call("42", failing)
    actors.call("42", failing)
    assert actors.breakers() == {breaker: BreakerState.OPEN}
    assert isinstance(actors.call("42", failing), BreakerOpenError)
    assert failing.calls == 2

    healthy = Script("ok")
    outcome = actors.call("43", healthy)
    if other_actor_rejected:
        assert isinstance(outcome, BreakerOpenError) and healthy.calls == 0
    else:
        assert outcome == "ok" and healthy.calls == 1
        assert actors.breakers()["cart-43"] is BreakerState.CLOSED


@pytest.mark.parametrize("mode", MODES)
def test_scope_both_under_retries_counts_each_attempt_once_on_the_actors_own_breaker(
    mode: str,
) -> None:
    # The breaker sits inside the retry, as daprd's runner puts it: attempts are
    # failures of cart-42 until it opens; its rejection ends the retries.
    actors = Actors(mode, actor_target(
        BreakerScope.BOTH, retry=RetryPolicy("r", duration=0.0, max_retries=5)))
    failing = Script(ConnectionError("cart 42 down"))
    assert isinstance(actors.call("42", failing), BreakerOpenError)
    assert failing.calls == 2
    stats = actors.fb.stats()["cart-42"]
    assert (stats.failures, stats.rejected) == (1, 1)
    assert actors.breakers() == {"cart-42": BreakerState.OPEN}

    healthy = Script("ok")
    assert actors.call("7", healthy) == "ok" and healthy.calls == 1


def test_scope_both_logs_the_state_change_of_the_type_id_breaker_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="fusebox")
    actors = Actors("sync", actor_target(BreakerScope.BOTH))
    failing = Script(ConnectionError())
    actors.call("42", failing)
    actors.call("42", failing)
    changes = [r.getMessage() for r in caplog.records
               if getattr(r, "fusebox_event", None) == "breaker_state"]
    assert changes == ['Circuit breaker "cart-42" changed state from closed to open']


@pytest.mark.parametrize("mode", MODES)
def test_a_default_actor_breaker_is_shared_by_the_type(mode: str) -> None:
    # What the control plane resolves DefaultActorCircuitBreakerPolicy to: daprd's
    # ActorPreLockPolicy keys a default breaker by the actor type.
    default = TargetPolicy(TargetKind.ACTOR, is_default=True,
                           circuit_breaker=OPEN_AT_SECOND_FAILURE,
                           circuit_breaker_scope=BreakerScope.TYPE,
                           spec_namespace="default", spec_name="resiliency")
    actors = Actors(mode, default)
    failing = Script(ConnectionError())
    actors.call("42", failing)
    actors.call("43", failing)
    assert actors.breakers() == {"cart": BreakerState.OPEN}
    assert isinstance(actors.call("44", Script("ok")), BreakerOpenError)
