"""The enum <-> wire tables: one place, complete both ways."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from fusebox.agent import wire_enums
from fusebox.agent.breaker import BreakerOverride, BreakerState, TransitionCause
from fusebox.agent.budget import BudgetKind
from fusebox.agent.policy import (
    BackoffKind,
    BreakerScope,
    Direction,
    RateLimitScope,
    TargetKind,
    WhenExceeded,
)
from fusebox.controlplane import wire_enums as server_wire_enums
from fusebox.controlplane.audit import AuditAction, AuditTargetKind
from fusebox.controlplane.spec_store.base import RevisionAction
from fusebox.v1 import audit_pb2, breaker_pb2, policy_pb2, spec_pb2

#: (enum, to_pb, from_pb, proto enum, members without a wire value)
TABLES: list[tuple[type[enum.Enum], Mapping[Any, int], Mapping[int, Any], EnumTypeWrapper,
                   frozenset[enum.Enum]]] = [
    (BreakerState, wire_enums.STATE_TO_PB, wire_enums.STATE_FROM_PB,
     breaker_pb2.BreakerState, frozenset()),
    (BreakerOverride, wire_enums.OVERRIDE_TO_PB, wire_enums.OVERRIDE_FROM_PB,
     breaker_pb2.BreakerOverride, frozenset()),
    (TransitionCause, wire_enums.CAUSE_TO_PB, wire_enums.CAUSE_FROM_PB,
     breaker_pb2.TransitionCause, frozenset({TransitionCause.EXTERNAL})),
    (TargetKind, wire_enums.TARGET_KIND_TO_PB, wire_enums.TARGET_KIND_FROM_PB,
     policy_pb2.TargetKind, frozenset()),
    (Direction, wire_enums.DIRECTION_TO_PB, wire_enums.DIRECTION_FROM_PB,
     policy_pb2.ComponentDirection, frozenset()),
    (BackoffKind, wire_enums.BACKOFF_TO_PB, wire_enums.BACKOFF_FROM_PB,
     policy_pb2.BackoffKind, frozenset()),
    (BreakerScope, wire_enums.BREAKER_SCOPE_TO_PB, wire_enums.BREAKER_SCOPE_FROM_PB,
     policy_pb2.CircuitBreakerScope, frozenset()),
    (RateLimitScope, wire_enums.RATE_LIMIT_SCOPE_TO_PB, wire_enums.RATE_LIMIT_SCOPE_FROM_PB,
     policy_pb2.RateLimitScope, frozenset()),
    (WhenExceeded, wire_enums.WHEN_EXCEEDED_TO_PB, wire_enums.WHEN_EXCEEDED_FROM_PB,
     policy_pb2.WhenExceeded, frozenset()),
    (BudgetKind, wire_enums.BUDGET_KIND_TO_PB, wire_enums.BUDGET_KIND_FROM_PB,
     policy_pb2.BudgetKind, frozenset()),
    (AuditAction, server_wire_enums.AUDIT_ACTION_TO_PB, server_wire_enums.AUDIT_ACTION_FROM_PB,
     audit_pb2.AuditAction, frozenset()),
    (AuditTargetKind, server_wire_enums.AUDIT_TARGET_KIND_TO_PB,
     server_wire_enums.AUDIT_TARGET_KIND_FROM_PB, audit_pb2.AuditTargetKind, frozenset()),
    (RevisionAction, server_wire_enums.REVISION_ACTION_TO_PB,
     server_wire_enums.REVISION_ACTION_FROM_PB, spec_pb2.RevisionAction, frozenset()),
]


@pytest.mark.parametrize(
    ("members", "to_pb", "from_pb", "wire", "unmapped"), TABLES,
    ids=[table[0].__name__ for table in TABLES],
)
def test_every_member_and_every_wire_value_has_its_counterpart(
    members: type[enum.Enum], to_pb: Mapping[Any, int], from_pb: Mapping[int, Any],
    wire: EnumTypeWrapper, unmapped: frozenset[enum.Enum],
) -> None:
    assert set(members) - unmapped == {m for m in to_pb if m is not None}
    # Every wire value but UNSPECIFIED names a member; UNSPECIFIED is None where it means "none".
    named = {v for v in wire.values() if not wire.Name(v).endswith("_UNSPECIFIED")}
    assert {v for v, m in from_pb.items() if m is not None} == named
    assert all(from_pb[to_pb[m]] is m for m in to_pb)
    # Each member and its wire value share a name: FORCE_OPEN <-> BREAKER_OVERRIDE_FORCE_OPEN.
    assert all(wire.Name(to_pb[m]).endswith("_" + m.name) for m in to_pb if m is not None)


def test_the_override_is_spelled_as_users_see_it() -> None:
    assert [o.value for o in BreakerOverride] == ["force-open", "force-closed", "disabled"]
