"""What BreakerService puts in a ``Breaker`` message (no server involved)."""

from __future__ import annotations

from fusebox.agent.breaker import BreakerState, Counts
from fusebox.agent.policy import BreakerQuorum, CircuitBreakerPolicy
from fusebox.controlplane.breakers import BreakerSnapshot
from fusebox.controlplane.server.services.breaker_service import breaker_to_pb
from fusebox.v1 import breaker_pb2
from tests.controlplane.breakers.breaker_cases import START, breaker_key


def snapshot(
    policy: CircuitBreakerPolicy, failing: tuple[str, ...] = (), reporting: int = 0
) -> BreakerSnapshot:
    return BreakerSnapshot(
        key=breaker_key(), policy=policy, state=BreakerState.CLOSED, generation=0,
        counts=Counts(12, 4, 8, 0, 8), open_until=None, override=None, active_leases=0,
        updated_at=START, failing_instances=failing, failing_instance_count=len(failing),
        reporting_instance_count=reporting,
    )


def test_a_quorum_breaker_carries_its_quorum_and_the_window_of_instances() -> None:
    policy = CircuitBreakerPolicy("sharedCB", quorum=BreakerQuorum(2, 0.5))
    message = breaker_to_pb(snapshot(policy, failing=("a", "b"), reporting=5))
    decoded = breaker_pb2.Breaker.FromString(message.SerializeToString())
    assert (decoded.policy.quorum.min_instances, decoded.policy.quorum.min_share) == (2, 0.5)
    assert list(decoded.failing_instances) == ["a", "b"]
    assert (decoded.failing_instance_count, decoded.reporting_instance_count) == (2, 5)


def test_an_ordinary_breaker_has_no_quorum_and_no_instances() -> None:
    message = breaker_to_pb(snapshot(CircuitBreakerPolicy("simpleCB")))
    assert not message.policy.HasField("quorum")
    assert (list(message.failing_instances), message.reporting_instance_count) == ([], 0)
