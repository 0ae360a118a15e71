"""Helpers shared by the breaker store tests: a manual clock, ids, policies, trips."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import BreakerQuorum, CircuitBreakerPolicy, TargetKind
from fusebox.agent.trip import TRIP_IDENTIFIERS
from fusebox.controlplane.breakers.model import OutcomeBatch

#: A unix time where every test clock starts (a whole number: float sums stay exact).
START = 1_700_000_000.0


@dataclass
class ManualClock:
    """Unix seconds that move only when a test moves them."""

    now: float = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def breaker_key(
    target: str = "order-processor", method: str = "orders", namespace: str = "default"
) -> BreakerKey:
    return BreakerKey(namespace, "resiliency", TargetKind.APP, target, method)


def policy(
    trip: str = "consecutiveFailures >= 5",
    *,
    max_requests: int = 1,
    interval: float = 0.0,
    timeout: float = 30.0,
    quorum: BreakerQuorum | None = None,
) -> CircuitBreakerPolicy:
    return CircuitBreakerPolicy(
        "simpleCB", max_requests=max_requests, interval=interval, timeout=timeout, trip=trip,
        quorum=quorum,
    )


def batch(
    runs: tuple[int, ...],
    *,
    key: BreakerKey | None = None,
    cb: CircuitBreakerPolicy | None = None,
    instance: str = "instance-1",
    lease: str = "",
    run_instances: tuple[str, ...] = (),
) -> OutcomeBatch:
    return OutcomeBatch(key or breaker_key(), cb or policy(), runs, instance, lease, run_instances)


# ---- random trip expressions ------------------------------------------------------

_COUNTERS = st.sampled_from(TRIP_IDENTIFIERS)


def int_expressions(max_leaves: int = 6, max_literal: int = 12) -> st.SearchStrategy[str]:
    """Integer-typed trip sub-expressions, fully parenthesised (division and modulo
    by zero included: literals start at 0)."""
    leaves = st.one_of(_COUNTERS, st.integers(0, max_literal).map(str))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from("+-*/%"), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda e: f"-({e})"),
        ),
        max_leaves=max_leaves,
    )


def trip_expressions(max_leaves: int = 6, max_literal: int = 12) -> st.SearchStrategy[str]:
    """Boolean trip expressions: comparisons of integer expressions, !, &&, ||, literals."""
    comparisons = st.tuples(
        int_expressions(max_leaves, max_literal),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        int_expressions(max_leaves, max_literal),
    ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
    leaves = st.one_of(comparisons, st.sampled_from(["true", "false"]))
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["&&", "||", "==", "!="]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda e: f"!({e})"),
        ),
        max_leaves=4,
    )
