"""Breaker identity, one type for agents, stores, server and CLI: display names, the
encoding used in store keys, the full key people type, the wire key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusebox.agent.breaker_key import BreakerKey
from fusebox.agent.policy import TargetKind
from fusebox.v1 import policy_pb2

_KEYS = st.builds(
    BreakerKey, st.text(), st.text(), st.sampled_from(TargetKind), st.text(min_size=1), st.text()
)


@pytest.mark.parametrize(
    ("kind", "target", "method", "shown"),
    [
        (TargetKind.APP, "order-processor", "orders", "order-processor:orders"),
        (TargetKind.APP, "order-processor", "", "order-processor"),
        (TargetKind.ACTOR, "cart", "42", "cart-42"),
        (TargetKind.ACTOR, "cart", "", "cart"),
        (TargetKind.COMPONENT, "statestore", "", "statestore"),
        (TargetKind.COMPONENT, "statestore", "outbound", "statestore"),
    ],
)
def test_display_name_is_what_dapr_and_the_agent_print(
    kind: TargetKind, target: str, method: str, shown: str
) -> None:
    assert BreakerKey("default", "spec", kind, target, method).display_name == shown


@given(_KEYS)
def test_encode_is_unambiguous_and_decodes_back(key: BreakerKey) -> None:
    text = key.encode()
    assert text.count("/") == 4 and not set(text) & set("{}: \n")
    assert BreakerKey.decode(text) == key


@given(_KEYS, _KEYS)
def test_different_keys_encode_differently(a: BreakerKey, b: BreakerKey) -> None:
    assert (a == b) == (a.encode() == b.encode())


@pytest.mark.parametrize("text", ["", "a/b/app/t", "a/b/pod/t/m", "a/b/app//m", "a/b/app/t/m/x"])
def test_decode_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="invalid breaker key"):
        BreakerKey.decode(text)


@given(_KEYS)
def test_proto_round_trip(key: BreakerKey) -> None:
    assert BreakerKey.from_proto(key.to_proto()) == key


def test_invalid_wire_keys_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"key\.target"):
        BreakerKey.from_proto(policy_pb2.BreakerKey(kind=policy_pb2.TARGET_KIND_APP))
    with pytest.raises(ValueError, match=r"key\.kind"):
        BreakerKey.from_proto(policy_pb2.BreakerKey(target="x"))


@pytest.mark.parametrize(
    ("key", "full"),
    [
        (BreakerKey("default", "resiliency", TargetKind.APP, "order-processor", "orders"),
         "default/resiliency/app/order-processor/orders"),
        (BreakerKey("default", "resiliency", TargetKind.APP, "order-processor"),
         "default/resiliency/app/order-processor"),
        (BreakerKey("prod", "r", TargetKind.COMPONENT, "statestore", "inbound"),
         "prod/r/component/statestore/inbound"),
    ],
)
def test_str_is_the_full_key_the_cli_takes(key: BreakerKey, full: str) -> None:
    assert str(key) == full


def test_an_agent_ignores_a_wire_key_of_a_kind_it_does_not_know() -> None:
    unknown = policy_pb2.BreakerKey(namespace="default", spec="r", kind=99, target="x")
    assert BreakerKey.try_from_proto(unknown) is None
    assert BreakerKey.try_from_proto(policy_pb2.BreakerKey(target="x")) is None
    known = BreakerKey("default", "r", TargetKind.ACTOR, "cart", "42")
    assert BreakerKey.try_from_proto(known.to_proto()) == known
