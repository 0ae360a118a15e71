"""Breaker identity: display names, the encoding used in keys, the wire key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusebox.agent.policy import TargetKind
from fusebox.controlplane.breakers import (
    BreakerId,
    breaker_id_from_proto,
    breaker_id_to_proto,
    open_breaker_store,
)
from fusebox.controlplane.breakers.embedded import EmbeddedBreakerStore
from fusebox.controlplane.breakers.redis import RedisBreakerStore
from fusebox.v1 import policy_pb2

_IDS = st.builds(
    BreakerId, st.text(), st.text(), st.sampled_from(TargetKind), st.text(min_size=1), st.text()
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
    assert BreakerId("default", "spec", kind, target, method).display_name == shown


@given(_IDS)
def test_encode_is_unambiguous_and_decodes_back(breaker_id: BreakerId) -> None:
    text = breaker_id.encode()
    assert text.count("/") == 4 and not set(text) & set("{}: \n")
    assert BreakerId.decode(text) == breaker_id


@given(_IDS, _IDS)
def test_different_ids_encode_differently(a: BreakerId, b: BreakerId) -> None:
    assert (a == b) == (a.encode() == b.encode())


@pytest.mark.parametrize("text", ["", "a/b/app/t", "a/b/pod/t/m", "a/b/app//m", "a/b/app/t/m/x"])
def test_decode_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="invalid breaker id"):
        BreakerId.decode(text)


@given(_IDS)
def test_proto_round_trip(breaker_id: BreakerId) -> None:
    assert breaker_id_from_proto(breaker_id_to_proto(breaker_id)) == breaker_id


def test_invalid_wire_keys_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"key\.target"):
        breaker_id_from_proto(policy_pb2.BreakerKey(kind=policy_pb2.TARGET_KIND_APP))
    with pytest.raises(ValueError, match=r"key\.kind"):
        breaker_id_from_proto(policy_pb2.BreakerKey(target="x"))


@pytest.mark.parametrize("url", [None, "", "memory://", "sqlite:///var/lib/fusebox/db"])
def test_embedded_urls_open_the_in_memory_store(url: str | None) -> None:
    assert isinstance(open_breaker_store(url), EmbeddedBreakerStore)


def test_redis_urls_open_the_redis_store_and_others_are_refused() -> None:
    assert isinstance(open_breaker_store("redis://127.0.0.1:6379/0"), RedisBreakerStore)
    with pytest.raises(ValueError, match="accepted"):
        open_breaker_store("postgres://x")
