"""What `fusebox breakers` prints, and how it reads a breaker NAME (no server involved)."""

from __future__ import annotations

import io
import json

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from fusebox.controlplane.cli._breaker_ref import (
    matching_breakers,
    parse_breaker_ref,
    the_one_match,
)
from fusebox.controlplane.cli._breaker_view import (
    breaker_details,
    breaker_to_json,
    breakers_table,
    event_to_json,
    key_path,
)
from fusebox.controlplane.cli._breaker_watch import BreakerBoard, JsonLinesSink, LiveTableSink
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode
from fusebox.v1 import breaker_pb2, policy_pb2

NOW = 1_700_000_000


def at(offset_seconds: int) -> Timestamp:
    return Timestamp(seconds=NOW + offset_seconds)


def app_key(
    target: str = "order-processor",
    method: str = "orders",
    spec: str = "myresiliency",
    namespace: str = "default",
) -> policy_pb2.BreakerKey:
    return policy_pb2.BreakerKey(
        namespace=namespace,
        spec=spec,
        kind=policy_pb2.TARGET_KIND_APP,
        target=target,
        method=method,
    )


def open_breaker(**key: str) -> breaker_pb2.Breaker:
    """order-processor:orders, tripped 30s ago by instance checkout-1, open 4s more."""
    k = app_key(**key)
    return breaker_pb2.Breaker(
        key=k,
        display_name=f"{k.target}:{k.method}" if k.method else k.target,
        state=breaker_pb2.BREAKER_STATE_OPEN,
        counts=breaker_pb2.BreakerCounts(
            requests=12, total_successes=7, total_failures=5, consecutive_failures=5
        ),
        generation=3,
        open_until=at(4),
        policy=policy_pb2.CircuitBreakerPolicy(
            name="simpleCB",
            max_requests=1,
            timeout=Duration(seconds=5),
            trip="consecutiveFailures >= 5",
        ),
        recent_transitions=[
            breaker_pb2.BreakerTransition(
                from_state=breaker_pb2.BREAKER_STATE_CLOSED,
                to_state=breaker_pb2.BREAKER_STATE_OPEN,
                cause=breaker_pb2.TRANSITION_CAUSE_TRIP,
                time=at(-30),
                generation=3,
                instance_id="checkout-1",
            )
        ],
    )


def closed_breaker(target: str, method: str = "", spec: str = "other") -> breaker_pb2.Breaker:
    return breaker_pb2.Breaker(
        key=app_key(target, method, spec),
        display_name=f"{target}:{method}" if method else target,
        state=breaker_pb2.BREAKER_STATE_CLOSED,
        counts=breaker_pb2.BreakerCounts(requests=2, total_successes=2, consecutive_successes=2),
        generation=1,
    )


def forced_open(reason: str, expires_in: int | None) -> breaker_pb2.Breaker:
    breaker = open_breaker()
    breaker.override.CopyFrom(
        breaker_pb2.OverrideInfo(
            override=breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN, reason=reason, set_by="alice@ops"
        )
    )
    if expires_in is not None:
        breaker.override.expire_time.CopyFrom(at(expires_in))
    return breaker


# ---- list -------------------------------------------------------------------------


def test_table_shows_one_row_per_breaker_with_counts_open_until_and_age() -> None:
    table = breakers_table([open_breaker(), closed_breaker("inventory")], now=NOW).splitlines()

    assert table[0].split() == [
        "NAMESPACE",
        "SPEC",
        "KIND",
        "NAME",
        "STATE",
        "OVERRIDE",
        "GEN",
        "COUNTS",
        "OPEN-UNTIL",
        "AGE",
    ]
    assert [line.split() for line in table[1:]] == [
        [
            "default",
            "myresiliency",
            "app",
            "order-processor:orders",
            "open",
            "-",
            "3",
            "12/5/5",
            "4s",
            "30s",
        ],
        ["default", "other", "app", "inventory", "closed", "-", "1", "2/0/0", "-", "-"],
    ]


def test_table_names_the_override_of_an_overridden_breaker() -> None:
    row = breakers_table([forced_open("maintenance", None)], now=NOW).splitlines()[1].split()
    assert row[5] == "force-open"


def test_open_until_in_the_past_shows_zero_rather_than_a_negative_age() -> None:
    breaker = open_breaker()
    breaker.open_until.CopyFrom(at(-2))
    assert breakers_table([breaker], now=NOW).splitlines()[1].split()[8] == "0s"


def test_json_breaker_has_stable_keys_and_rfc3339_times() -> None:
    shown = breaker_to_json(forced_open("maintenance", expires_in=600))

    assert shown == {
        "name": "default/myresiliency/app/order-processor/orders",
        "displayName": "order-processor:orders",
        "key": {
            "namespace": "default",
            "spec": "myresiliency",
            "kind": "app",
            "target": "order-processor",
            "method": "orders",
        },
        "state": "open",
        "generation": 3,
        "counts": {
            "requests": 12,
            "totalSuccesses": 7,
            "totalFailures": 5,
            "consecutiveSuccesses": 0,
            "consecutiveFailures": 5,
        },
        "openUntil": "2023-11-14T22:13:24Z",
        "override": {
            "override": "force-open",
            "reason": "maintenance",
            "expireTime": "2023-11-14T22:23:20Z",
            "setBy": "alice@ops",
        },
        "policy": {
            "name": "simpleCB",
            "maxRequests": 1,
            "interval": "0s",
            "timeout": "5s",
            "trip": "consecutiveFailures >= 5",
            "quorum": None,
        },
        "activeLeases": 0,
        "failingInstances": [],
        "failingInstanceCount": 0,
        "reportingInstanceCount": 0,
        "recentTransitions": [
            {
                "from": "closed",
                "to": "open",
                "cause": "trip",
                "time": "2023-11-14T22:12:50Z",
                "generation": 3,
                "instanceId": "checkout-1",
                "detail": "",
            }
        ],
    }


def test_json_of_a_breaker_without_override_policy_or_open_until_uses_null() -> None:
    shown = breaker_to_json(closed_breaker("inventory"))
    assert (shown["override"], shown["policy"], shown["openUntil"]) == (None, None, None)
    assert shown["name"] == "default/other/app/inventory"


# ---- get --------------------------------------------------------------------------


def test_details_show_state_counts_override_policy_and_transitions_with_cause() -> None:
    text = breaker_details(forced_open("upstream maintenance", expires_in=600), now=NOW)
    fields = {
        label.strip(): value.strip()
        for label, _, value in (line.partition(":") for line in text.split("\n\n")[0].splitlines())
    }

    assert fields["Name"] == "order-processor:orders"
    assert fields["Key"] == "default/myresiliency/app/order-processor/orders"
    assert fields["State"] == "open"
    assert fields["Generation"] == "3"
    assert fields["Counts"] == (
        "12 requests, 7 successes (0 consecutive), 5 failures (5 consecutive)"
    )
    assert fields["Open until"] == "2023-11-14T22:13:24Z (in 4s)"
    assert fields["Override"] == (
        'force-open, reason "upstream maintenance", set by alice@ops, '
        "expires 2023-11-14T22:23:20Z (in 10m)"
    )
    assert fields["Policy"] == (
        "simpleCB (trip consecutiveFailures >= 5, open 5s, 1 probe(s), "
        "counts never reset while closed)"
    )
    transitions = text.split("\n\n")[1].splitlines()
    assert transitions[0] == "Recent transitions (oldest first):"
    assert transitions[1].split() == ["AGE", "FROM", "TO", "CAUSE", "GEN", "INSTANCE", "DETAIL"]
    assert transitions[2].split() == ["30s", "closed", "open", "trip", "3", "checkout-1", "-"]


def quorum_breaker(
    failing: list[str], failing_count: int, reporting: int, **quorum: float
) -> breaker_pb2.Breaker:
    """A closed fleet breaker whose policy has a quorum, with its current window."""
    breaker = closed_breaker("order-processor", "orders")
    breaker.policy.CopyFrom(policy_pb2.CircuitBreakerPolicy(
        name="sharedCB", max_requests=1, timeout=Duration(seconds=30),
        trip="consecutiveFailures >= 5", quorum=policy_pb2.BreakerQuorum(**quorum),
    ))
    breaker.failing_instances.extend(failing)
    breaker.failing_instance_count = failing_count
    breaker.reporting_instance_count = reporting
    return breaker


def details(breaker: breaker_pb2.Breaker) -> dict[str, str]:
    text = breaker_details(breaker, now=NOW)
    return {
        label.strip(): value.strip()
        for label, _, value in (line.partition(":") for line in text.split("\n\n")[0].splitlines())
    }


def test_details_of_a_quorum_breaker_show_the_quorum_and_the_failing_instances() -> None:
    fields = details(quorum_breaker(["checkout-1", "checkout-7"], 2, 4, min_instances=2))
    assert fields["Policy"] == (
        "sharedCB (trip consecutiveFailures >= 5, open 30s, 1 probe(s), "
        "counts never reset while closed, quorum 2 instances)"
    )
    assert fields["Failing instances"] == (
        "checkout-1, checkout-7 (2 of 4 reporting; quorum 2 instances)"
    )


def test_details_count_failing_instances_the_server_did_not_name() -> None:
    fields = details(quorum_breaker(["a", "b"], 150, 400, min_instances=3, min_share=0.5))
    assert fields["Failing instances"] == (
        "a, b and 148 more (150 of 400 reporting; quorum 3 instances and 50% of reporting)"
    )
    quiet = details(quorum_breaker([], 0, 0, min_share=1.0))
    assert quiet["Failing instances"] == "none (0 of 0 reporting; quorum 100% of reporting)"


def test_details_of_a_breaker_without_quorum_have_no_failing_instances_line() -> None:
    assert "Failing instances" not in details(closed_breaker("inventory"))


def test_json_of_a_quorum_breaker_has_the_quorum_and_its_window() -> None:
    shown = breaker_to_json(quorum_breaker(["a", "b"], 2, 4, min_instances=2, min_share=0.5))
    assert shown["policy"]["quorum"] == {"minInstances": 2, "minShare": 0.5}
    assert (
        shown["failingInstances"], shown["failingInstanceCount"], shown["reportingInstanceCount"]
    ) == (["a", "b"], 2, 4)
    assert json.loads(json.dumps(shown)) == shown


def test_details_of_an_override_without_ttl_say_until_cleared() -> None:
    text = breaker_details(forced_open("drill", expires_in=None), now=NOW)
    assert 'force-open, reason "drill", set by alice@ops, until cleared' in text


def test_details_without_transitions_say_none() -> None:
    assert breaker_details(closed_breaker("inventory"), now=NOW).endswith(
        "Recent transitions: none"
    )


# ---- NAME -------------------------------------------------------------------------


def test_full_key_names_exactly_one_breaker() -> None:
    ref = parse_breaker_ref("default/myresiliency/app/order-processor/orders")
    assert ref.key == app_key()


def test_full_key_of_a_component_has_no_method() -> None:
    ref = parse_breaker_ref("prod/spec1/component/statestore")
    assert ref.key == policy_pb2.BreakerKey(
        namespace="prod", spec="spec1", kind=policy_pb2.TARGET_KIND_COMPONENT, target="statestore"
    )


@pytest.mark.parametrize(
    "text", ["default/spec/app", "default/spec/gateway/x", "a/b/app/c/d/e", "default//app/x"]
)
def test_malformed_full_key_is_a_usage_error(text: str) -> None:
    with pytest.raises(CommandFailed) as failure:
        parse_breaker_ref(text)
    assert failure.value.exit_code is ExitCode.USAGE
    assert "NAMESPACE/SPEC/KIND/TARGET[/METHOD]" in failure.value.message


def test_full_key_contradicting_the_namespace_flag_is_a_usage_error() -> None:
    with pytest.raises(CommandFailed) as failure:
        parse_breaker_ref("default/myresiliency/app/order-processor/orders", namespace="prod")
    assert failure.value.exit_code is ExitCode.USAGE


def test_display_name_matches_every_spec_unless_narrowed() -> None:
    breakers = [open_breaker(), open_breaker(spec="canary"), closed_breaker("inventory")]

    both = matching_breakers(parse_breaker_ref("order-processor:orders"), breakers)
    assert [key_path(b.key) for b in both] == [
        "default/canary/app/order-processor/orders",
        "default/myresiliency/app/order-processor/orders",
    ]
    one = the_one_match(parse_breaker_ref("order-processor:orders", spec="canary"), breakers)
    assert one.key.spec == "canary"


def test_ambiguous_display_name_fails_listing_the_candidates() -> None:
    breakers = [open_breaker(), open_breaker(namespace="prod")]
    with pytest.raises(CommandFailed) as failure:
        the_one_match(parse_breaker_ref("order-processor:orders"), breakers)
    assert failure.value.exit_code is ExitCode.REJECTED
    assert "matches 2 circuit breakers" in failure.value.message
    assert [line.strip() for line in failure.value.details] == [
        "default/myresiliency/app/order-processor/orders",
        "prod/myresiliency/app/order-processor/orders",
    ]


def test_unknown_display_name_fails_saying_where_it_looked() -> None:
    with pytest.raises(CommandFailed) as failure:
        the_one_match(parse_breaker_ref("payments", namespace="prod"), [open_breaker()])
    assert failure.value.message == 'no circuit breaker named "payments" in namespace "prod"'


# ---- watch --------------------------------------------------------------------------


def event(
    revision: str, breaker: breaker_pb2.Breaker, snapshot: bool = False
) -> breaker_pb2.WatchBreakersResponse:
    response = breaker_pb2.WatchBreakersResponse(
        revision=revision, snapshot=snapshot, breaker=breaker
    )
    if not snapshot and breaker.recent_transitions:
        response.transition.CopyFrom(breaker.recent_transitions[-1])
    return response


def test_json_lines_are_one_flushed_object_per_event() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    sink.event(event("7-0", closed_breaker("inventory"), snapshot=True))
    sink.event(event("8-0", open_breaker()))

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert sorted(first) == ["breaker", "revision", "snapshot", "transition"]
    assert (first["revision"], first["snapshot"], first["transition"]) == ("7-0", True, None)
    assert second["transition"]["cause"] == "trip"
    assert second["breaker"]["state"] == "open"
    assert second == event_to_json(event("8-0", open_breaker()))


def test_board_keeps_the_latest_state_of_each_breaker() -> None:
    board = BreakerBoard()
    board.apply(event("1", closed_breaker("order-processor", "orders", spec="myresiliency")))
    board.apply(event("2", open_breaker()))

    assert [b.state for b in board.breakers.values()] == [breaker_pb2.BREAKER_STATE_OPEN]
    assert board.revision == "2"


def test_board_drops_breakers_a_new_snapshot_no_longer_contains() -> None:
    board = BreakerBoard()
    board.apply(event("1", closed_breaker("inventory"), snapshot=True))
    board.apply(event("1", open_breaker(), snapshot=True))
    board.connected()  # the stream broke; the server could not resume
    board.apply(event("9", open_breaker(), snapshot=True))
    board.apply(event("10", closed_breaker("payments")))

    assert sorted(b.display_name for b in board.breakers.values()) == [
        "order-processor:orders",
        "payments",
    ]


def test_live_table_redraws_in_place_with_the_current_rows() -> None:
    out = io.StringIO()
    sink = LiveTableSink(out, "circuit breakers at 127.0.0.1:1", clock=lambda: float(NOW))
    sink.connected()
    sink.event(event("5", open_breaker()))

    frames = out.getvalue().split("\x1b[H")[1:]
    assert len(frames) == 2  # one per redraw, each starting at the top left
    assert "no circuit breakers yet" in frames[0]
    last = frames[1]
    assert last.endswith("\x1b[J")  # leftovers of a longer previous frame are erased
    lines = [line.removesuffix("\x1b[K") for line in last.removesuffix("\x1b[J").splitlines()]
    assert lines[0] == "circuit breakers at 127.0.0.1:1 — revision 5 (Ctrl-C to exit)"
    assert lines[2].split()[0] == "NAMESPACE"
    assert lines[3].split()[3:5] == ["order-processor:orders", "open"]
