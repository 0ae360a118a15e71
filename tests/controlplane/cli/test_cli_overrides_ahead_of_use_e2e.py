"""Overrides set before any agent uses a breaker, end to end: a real `fusebox serve`
process, the CLI as processes, and a real agent that starts calling afterwards.

The operator prepares a maintenance window: every method of `inventory`
forced open (`--all-methods`), `payments:charge` disabled, while no agent has
called either. The checkout agent that starts later adopts both as soon as its
breakers exist, for methods nobody named in advance too; clearing the target
lets its calls through again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusebox.agent import Agent, BreakerOpenError, Target
from fusebox.agent.breaker import BreakerOverride
from tests.support.eventually import eventually
from tests.support.processes import ServerProcess, child_env
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 30.0

# Three failures would open each instance's own breaker: a disabled override
# that reached the agent is what lets failing calls through after that.
SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: ahead
scopes:
  - checkout
spec:
  policies:
    circuitBreakers:
      threeStrikes:
        maxRequests: 1
        timeout: 1h
        trip: consecutiveFailures >= 3
  targets:
    apps:
      inventory:
        circuitBreaker: threeStrikes
      payments:
        circuitBreaker: threeStrikes
"""


def fusebox(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusebox.controlplane.cli", "--server", address, *args],
        capture_output=True, text=True, timeout=DEADLINE_SECONDS, cwd=REPOSITORY,
        env=child_env(), check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with ServerProcess(tmp_path) as process:
        spec = tmp_path / "resiliency.yaml"
        spec.write_text(SPEC)
        ok(fusebox(process.address, "apply", "-f", str(spec)))
        yield process.address


def outcome(target: Target, call: Callable[[], object]) -> str:
    """``"rejected"`` (the breaker), or what the upstream did: ``"ok"`` / ``"failed"``."""
    try:
        target.call(call)
    except BreakerOpenError:
        return "rejected"
    except ConnectionRefusedError:
        return "failed"
    return "ok"


def override_on(fb: Agent, breaker: str) -> BreakerOverride | None:
    """The operator override the agent's breaker holds (pushed by the server)."""
    found = fb.breaker(breaker)
    return None if found is None else found.override


def healthy() -> str:
    return "stock: 12"


def down() -> None:
    raise ConnectionRefusedError("payments provider in maintenance")


def test_overrides_set_before_any_agent_calls_reach_the_agent_that_starts_later(
    server: str, tmp_path: Path
) -> None:
    # The operator, before the window: nothing has called inventory or payments yet.
    assert ok(fusebox(server, "breakers", "open", "default/ahead/app/inventory", "--all-methods",
                      "--reason", "maintenance window", "--ttl", "1h")) == (
        'every circuit breaker of app "inventory" (spec default/ahead) forced open for 1h: '
        "0 existing, and every one first used later\n"
    )
    assert ok(fusebox(server, "breakers", "disable", "default/ahead/app/payments/charge",
                      "--reason", "card provider maintenance")) == (
        'circuit breaker "payments:charge" disabled (state closed, generation 1)\n'
    )
    listed = json.loads(ok(fusebox(server, "breakers", "list", "-o", "json")))
    assert [b["name"] for b in listed["breakers"]] == ["default/ahead/app/payments/charge"]
    [rule] = listed["targetOverrides"]
    assert (rule["name"], rule["override"]["override"], rule["override"]["reason"]) == (
        "default/ahead/app/inventory", "force-open", "maintenance window")
    assert rule["override"]["expireTime"] is not None

    # Then checkout starts and calls: the first calls may run before the server's
    # answer reaches the agent; every call after that sees the overrides.
    with Agent(app_id="checkout", server=server, instance_id="checkout-ahead-1",
               cache_path=tmp_path / "policies.bin") as fb:
        eventually(lambda: fb.policies is not None and len(fb.policies.targets) == 2,
                   deadline=DEADLINE_SECONDS, what="the agent to receive its policies")
        stock = fb.app("inventory", method="stock")
        eventually(lambda: outcome(stock, healthy) == "rejected", deadline=DEADLINE_SECONDS,
                   what="inventory:stock to be forced open on the agent")
        audit = fb.app("inventory", method="audit")  # a method nobody named in advance
        eventually(lambda: outcome(audit, healthy) == "rejected", deadline=DEADLINE_SECONDS,
                   what="inventory:audit to be forced open on the agent")
        charge = fb.app("payments", method="charge")
        assert outcome(charge, down) == "failed"  # the first call creates the breaker
        eventually(lambda: override_on(fb, "payments:charge") is BreakerOverride.DISABLED,
                   deadline=DEADLINE_SECONDS, what="payments:charge to be disabled on the agent")
        # Disabled: failing calls pass through, though 3 failures would open the
        # instance's own breaker.
        assert [outcome(charge, down) for _ in range(5)] == ["failed"] * 5

        shown = json.loads(ok(fusebox(server, "breakers", "get", "inventory:audit",
                                      "-o", "json")))
        assert shown["override"]["override"] == "force-open"
        assert shown["override"]["reason"] == "maintenance window"
        assert shown["recentTransitions"][0]["cause"] == "override"

        # The window ends: cleared by the target's name, now that its breakers exist.
        assert ok(fusebox(server, "breakers", "clear", "inventory", "--all-methods")) == (
            'every circuit breaker of app "inventory" (spec default/ahead): override cleared '
            "on 2 existing (inventory:audit, inventory:stock)\n"
        )
        eventually(lambda: outcome(stock, healthy) == "ok", deadline=DEADLINE_SECONDS,
                   what="inventory:stock to let calls through again")
        assert outcome(audit, healthy) == "ok"
    assert json.loads(ok(fusebox(server, "breakers", "list", "-o", "json")))[
        "targetOverrides"] == []


def test_an_override_ahead_of_use_is_refused_when_no_stored_spec_binds_the_breaker(
    server: str,
) -> None:
    unbound = fusebox(server, "breakers", "open", "default/ahead/app/inventry", "--all-methods",
                      "--reason", "r")
    assert unbound.returncode == 1
    assert unbound.stderr == (
        "error: failed precondition: spec default/ahead binds no circuit breaker to app "
        "'inventry' (did you mean 'inventory'?); it binds one to: app inventory, app payments\n"
    )
    no_spec = fusebox(server, "breakers", "open", "default/behind/app/inventory/stock",
                      "--reason", "r")
    assert no_spec.returncode == 1
    assert no_spec.stderr.startswith(
        "error: no spec default/behind is stored: a breaker no agent has used takes its policy "
        "from the stored spec that binds it; apply the spec first; specs that bind one to app "
        "'inventory': default/ahead"
    )
    by_name = fusebox(server, "breakers", "open", "inventory:stock", "--reason", "r")
    assert by_name.returncode == 1
    assert "name it by its full key NAMESPACE/SPEC/KIND/TARGET[/METHOD]" in by_name.stderr
    assert json.loads(ok(fusebox(server, "breakers", "list", "-o", "json"))) == {
        "breakers": [], "targetOverrides": []}
