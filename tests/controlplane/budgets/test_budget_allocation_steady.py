"""The allocation in a saturated steady state, simulated (bench/budget_allocation.py):
``make bench-budgets``' rate limit scenario (500/s, 25 callers wanting 36.4/s and
25 wanting 3.64/s) driven through ``refresh_rows`` with the agent's token
buckets, deterministic for a seed. No timing: counts of simulated calls."""

from __future__ import annotations

import pytest

from bench.budget_allocation import BUSY_RATE, LIGHT_RATE, LIMIT, simulate


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_a_saturated_fleet_is_granted_and_admits_the_whole_limit(replicas: int) -> None:
    outcome = simulate(replicas=replicas, seed=replicas)
    assert outcome.max_held <= 1.0 + 1e-9  # never over-committed on the way
    assert outcome.granted_total >= 0.99 * LIMIT
    mean = sum(outcome.admitted_per_second) / len(outcome.admitted_per_second)
    assert mean >= 0.985 * LIMIT
    assert max(outcome.admitted_per_second) <= 1.05 * LIMIT


@pytest.mark.parametrize("replicas", [1, 2, 3])
def test_light_callers_get_their_demand_and_no_headroom_while_saturated(
    replicas: int,
) -> None:
    outcome = simulate(replicas=replicas, seed=replicas)
    # Every replica reads every row's demand as its owner reported it, not decayed.
    assert outcome.light_demand == pytest.approx(LIGHT_RATE, rel=0.03)
    assert outcome.busy_demand == pytest.approx(BUSY_RATE, rel=0.01)
    assert 0.99 * LIGHT_RATE <= outcome.light_grant <= 1.03 * LIGHT_RATE
    assert outcome.light_refused_per_second <= 0.01 * LIMIT
