"""`fusebox breakers …` against a real gRPC server on loopback.

The server is an in-process ``BreakerService`` that answers from a fixed list
of breakers and records what it was asked, so these tests pin down what the
CLI sends (filters, keys, overrides, resume positions) and how it maps every
answer to output and exit codes. The real control plane is exercised in
``test_cli_breakers_e2e.py``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from fusebox.controlplane.cli import ExitCode, main
from fusebox.controlplane.cli._breaker_view import key_path
from fusebox.controlplane.cli._breaker_watch import BreakerWatcher, JsonLinesSink
from fusebox.controlplane.cli._breakers import USER_METADATA_KEY
from fusebox.controlplane.cli._connection import BreakerServiceClient
from fusebox.controlplane.cli._errors import CommandFailed
from fusebox.controlplane.cli._parser import build_parser
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, policy_pb2
from tests.support.redis_server import free_port


def breaker(
    target: str,
    method: str = "",
    *,
    spec: str = "myresiliency",
    namespace: str = "default",
    state: breaker_pb2.BreakerState.ValueType = breaker_pb2.BREAKER_STATE_CLOSED,
) -> breaker_pb2.Breaker:
    return breaker_pb2.Breaker(
        key=policy_pb2.BreakerKey(
            namespace=namespace,
            spec=spec,
            kind=policy_pb2.TARGET_KIND_APP,
            target=target,
            method=method,
        ),
        display_name=f"{target}:{method}" if method else target,
        state=state,
        generation=1,
    )


@dataclass
class WatchScript:
    """One WatchBreakers call: these events, then this status (None: end the stream)."""

    events: list[breaker_pb2.WatchBreakersResponse]
    ends_with: grpc.StatusCode | None = None


@dataclass
class ScriptedBreakers(breaker_pb2_grpc.BreakerServiceServicer):  # type: ignore[misc]
    breakers: list[breaker_pb2.Breaker] = field(default_factory=list)
    target_overrides: list[breaker_pb2.TargetOverride] = field(default_factory=list)
    watches: list[WatchScript] = field(default_factory=list)
    list_requests: list[breaker_pb2.ListBreakersRequest] = field(default_factory=list)
    watch_requests: list[breaker_pb2.WatchBreakersRequest] = field(default_factory=list)
    overrides: list[tuple[breaker_pb2.SetOverrideRequest, dict[str, str]]] = field(
        default_factory=list
    )
    resets: list[breaker_pb2.ResetBreakerRequest] = field(default_factory=list)

    def _find(
        self, key: policy_pb2.BreakerKey, context: grpc.ServicerContext
    ) -> breaker_pb2.Breaker:
        for b in self.breakers:
            if b.key == key:
                return b
        context.abort(grpc.StatusCode.NOT_FOUND, f"circuit breaker {key_path(key)} not found")
        raise AssertionError("unreachable")

    def ListBreakers(self, request: breaker_pb2.ListBreakersRequest, context: object) -> object:
        self.list_requests.append(request)
        return breaker_pb2.ListBreakersResponse(
            breakers=[
                b
                for b in self.breakers
                if request.namespace in ("", b.key.namespace)
                and request.app_id in ("", b.key.target)
                and request.state in (breaker_pb2.BREAKER_STATE_UNSPECIFIED, b.state)
            ],
            target_overrides=[
                r for r in self.target_overrides
                if request.namespace in ("", r.target.namespace)
                and request.app_id in ("", r.target.target)
            ],
        )

    def GetBreaker(
        self, request: breaker_pb2.GetBreakerRequest, context: grpc.ServicerContext
    ) -> object:
        return breaker_pb2.GetBreakerResponse(breaker=self._find(request.key, context))

    def SetOverride(
        self, request: breaker_pb2.SetOverrideRequest, context: grpc.ServicerContext
    ) -> object:
        if request.all_methods:  # every breaker of the target
            self.overrides.append((request, dict(context.invocation_metadata())))
            of_target = [b for b in self.breakers if (b.key.namespace, b.key.spec, b.key.kind,
                         b.key.target) == (request.key.namespace, request.key.spec,
                                           request.key.kind, request.key.target)]
            for b in of_target:
                b.override.override = request.override
            response = breaker_pb2.SetOverrideResponse(breakers=of_target)
            if request.override:
                response.target_override.target.CopyFrom(request.key)
                response.target_override.override.override = request.override
            return response
        found = self._find(request.key, context)
        self.overrides.append((request, dict(context.invocation_metadata())))
        found.override.override = request.override
        found.override.reason = request.reason
        if request.override == breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN:
            found.state = breaker_pb2.BREAKER_STATE_OPEN
            found.generation += 1
        return breaker_pb2.SetOverrideResponse(breaker=found)

    def ResetBreaker(
        self, request: breaker_pb2.ResetBreakerRequest, context: grpc.ServicerContext
    ) -> object:
        found = self._find(request.key, context)
        self.resets.append(request)
        if request.reason == "refuse":
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "breaker is disabled")
        found.state = breaker_pb2.BREAKER_STATE_CLOSED
        found.generation += 1
        return breaker_pb2.ResetBreakerResponse(breaker=found)

    def WatchBreakers(
        self, request: breaker_pb2.WatchBreakersRequest, context: grpc.ServicerContext
    ) -> Iterator[breaker_pb2.WatchBreakersResponse]:
        self.watch_requests.append(request)
        script = (
            self.watches.pop(0) if self.watches else WatchScript([], grpc.StatusCode.UNAVAILABLE)
        )
        yield from script.events
        if script.ends_with is not None:
            context.abort(script.ends_with, "scripted end")


@pytest.fixture
def service() -> Iterator[tuple[ScriptedBreakers, str]]:
    servicer = ScriptedBreakers()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    breaker_pb2_grpc.add_BreakerServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


def run(address: str, *args: str) -> int:
    return main(["--server", address, "breakers", *args])


# ---- command lines ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["breakers"],
        ["breakers", "explode"],
        ["breakers", "open", "order-processor:orders"],  # --reason is required
        ["breakers", "disable", "x", "--reason", "   "],
        ["breakers", "reset", "x"],
        ["breakers", "open", "x", "--reason", "r", "--ttl", "10"],  # a unit is required
        ["breakers", "open", "x", "--reason", "r", "--ttl", "0s"],
        ["breakers", "open", "x", "--reason", "r", "--ttl", "soon"],
        ["breakers", "list", "--state", "ajar"],
        ["breakers", "get", "x", "-o", "xml"],
    ],
)
def test_bad_breaker_command_lines_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == ExitCode.USAGE
    assert "usage: fusebox breakers" in capsys.readouterr().err


def test_ttl_accepts_go_durations() -> None:
    args = build_parser().parse_args(["breakers", "open", "x", "--reason", "r", "--ttl", "1h30m"])
    assert args.ttl == 5400.0


def test_malformed_full_key_exits_2_before_contacting_any_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--server", f"127.0.0.1:{free_port()}", "breakers", "get", "a/b/c"]) == 2
    assert "NAMESPACE/SPEC/KIND/TARGET[/METHOD]" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ("list",),
        ("get", "default/s/app/x"),
        ("open", "default/s/app/x", "--reason", "r"),
        ("reset", "default/s/app/x", "--reason", "r"),
    ],
)
def test_unreachable_server_exits_3(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    assert run(address, *args) == ExitCode.UNREACHABLE
    assert f"cannot reach the Fusebox server at {address}" in capsys.readouterr().err


# ---- list ---------------------------------------------------------------------------


def test_list_sends_the_filters_and_prints_a_table(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [
        breaker("order-processor", "orders", state=breaker_pb2.BREAKER_STATE_OPEN),
        breaker("order-processor", "refunds"),
    ]

    assert run(address, "list", "--app", "order-processor", "--state", "open") == 0

    assert servicer.list_requests == [
        breaker_pb2.ListBreakersRequest(
            namespace="default", app_id="order-processor", state=breaker_pb2.BREAKER_STATE_OPEN
        )
    ]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["NAMESPACE", "SPEC", "KIND", "NAME"]
    assert [line.split()[3:5] for line in lines[1:]] == [["order-processor:orders", "open"]]


def test_list_all_namespaces_as_json(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("b", namespace="prod"), breaker("a")]

    assert run(address, "list", "-A", "-o", "json") == 0

    assert servicer.list_requests[0].namespace == ""
    shown = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in shown["breakers"]] == [
        "default/myresiliency/app/a",
        "prod/myresiliency/app/b",
    ]


def test_empty_list_says_so_on_stderr(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = service
    assert run(address, "list", "-n", "prod") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert 'no circuit breakers found in namespace "prod"' in captured.err


# ---- get ----------------------------------------------------------------------------


def test_get_by_display_name_fetches_the_one_match(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders"), breaker("inventory")]

    assert run(address, "get", "order-processor:orders", "-o", "json") == 0

    assert json.loads(capsys.readouterr().out)["name"] == (
        "default/myresiliency/app/order-processor/orders"
    )
    assert servicer.list_requests[0].namespace == ""  # no -n: any namespace


def test_get_ambiguous_display_name_exits_1_listing_candidates(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [
        breaker("order-processor", "orders"),
        breaker("order-processor", "orders", spec="canary"),
    ]

    assert run(address, "get", "order-processor:orders") == ExitCode.REJECTED

    err = capsys.readouterr().err
    assert "default/canary/app/order-processor/orders" in err
    assert "default/myresiliency/app/order-processor/orders" in err
    assert "matches 2 circuit breakers" in err
    assert run(address, "get", "order-processor:orders", "--spec", "canary", "-o", "yaml") == 0
    assert "spec: canary" in capsys.readouterr().out


def test_get_unknown_full_key_exits_1_with_the_servers_message(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, address = service
    assert run(address, "get", "default/s/app/ghost") == ExitCode.REJECTED
    assert "error: circuit breaker default/s/app/ghost not found" in capsys.readouterr().err


def test_an_unknown_display_name_exits_1_suggesting_the_closest_names(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders"), breaker("order-processor", "order"),
                         breaker("inventory"), breaker("order-processor", "orders", spec="b",
                                                       namespace="prod")]

    assert run(address, "get", "order-procesor:orders", "-n", "default") == ExitCode.REJECTED
    err = capsys.readouterr().err
    assert err == ('error: no circuit breaker named "order-procesor:orders" in namespace '
                   '"default" (did you mean "order-processor:orders" or '
                   '"order-processor:order"?)\n')
    assert run(address, "reset", "ORDER-PROCESSOR:orders", "--reason", "r") == ExitCode.REJECTED
    assert '(did you mean "order-processor:orders"' in capsys.readouterr().err
    assert run(address, "get", "nothing-alike") == ExitCode.REJECTED
    assert capsys.readouterr().err == 'error: no circuit breaker named "nothing-alike"\n'


def test_an_override_on_an_unknown_display_name_says_how_to_set_one_ahead_of_use(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders")]

    assert run(address, "open", "order-processor:refunds", "--reason", "r") == (
        ExitCode.REJECTED
    )
    err = capsys.readouterr().err
    assert '(did you mean "order-processor:orders"?); to set an override on a breaker no ' \
           "agent has used yet, name it by its full key NAMESPACE/SPEC/KIND/TARGET[/METHOD]" in err
    assert servicer.overrides == []


def test_an_unknown_full_key_exits_1_suggesting_the_closest_keys(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders"), breaker("inventory")]

    assert run(address, "get", "default/myresiliency/app/order-procesor/orders") == (
        ExitCode.REJECTED
    )
    assert capsys.readouterr().err == (
        "error: circuit breaker default/myresiliency/app/order-procesor/orders not found "
        '(did you mean "default/myresiliency/app/order-processor/orders"?)\n'
    )
    assert servicer.list_requests[-1].namespace == "default"  # the key's namespace


# ---- overrides / reset ----------------------------------------------------------------


def test_open_with_ttl_sends_force_open_reason_ttl_and_who(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders")]

    code = run(
        address, "open", "order-processor:orders", "--reason", "upstream deploy", "--ttl", "10m"
    )

    assert code == 0
    [(request, metadata)] = servicer.overrides
    assert request.key == servicer.breakers[0].key
    assert request.override == breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN
    assert request.reason == "upstream deploy"
    assert request.ttl.ToSeconds() == 600
    assert "@" in metadata[USER_METADATA_KEY]
    assert capsys.readouterr().out.strip() == (
        'circuit breaker "order-processor:orders" forced open for 10m (state open, generation 2)'
    )


@pytest.mark.parametrize(
    ("action", "override"),
    [
        ("close", breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED),
        ("disable", breaker_pb2.BREAKER_OVERRIDE_DISABLED),
        ("clear", breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED),
    ],
)
def test_override_actions_map_to_their_override(
    action: str, override: int, service: tuple[ScriptedBreakers, str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("inventory")]
    reason = () if action == "clear" else ("--reason", "why")

    assert run(address, action, "default/myresiliency/app/inventory", *reason, "-o", "json") == 0

    [(request, _)] = servicer.overrides
    assert request.override == override
    assert not request.HasField("ttl")
    assert servicer.list_requests == []  # a full key needs no lookup


def test_reset_sends_the_reason_and_reports_the_new_state(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("inventory", state=breaker_pb2.BREAKER_STATE_OPEN)]

    assert run(address, "reset", "inventory", "--reason", "fixed") == 0

    assert [r.reason for r in servicer.resets] == ["fixed"]
    assert capsys.readouterr().out.strip() == (
        'circuit breaker "inventory" reset (state closed, generation 2)'
    )


def test_refused_reset_exits_1_with_the_servers_reason(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("inventory")]
    assert run(address, "reset", "inventory", "--reason", "refuse") == ExitCode.REJECTED
    assert "error: failed precondition: breaker is disabled" in capsys.readouterr().err


# ---- every method (--all-methods) -------------------------------------------------


def target_override(target: str, reason: str = "maintenance") -> breaker_pb2.TargetOverride:
    return breaker_pb2.TargetOverride(
        target=breaker(target).key,
        override=breaker_pb2.OverrideInfo(override=breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN,
                                          reason=reason, set_by="alice@ops"),
    )


def test_all_methods_by_target_name_sends_the_target_and_names_its_breakers(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders"), breaker("order-processor", "pay"),
                         breaker("inventory")]

    assert run(address, "open", "order-processor", "--all-methods", "--reason", "maintenance",
               "--ttl", "2h") == 0

    [(request, _)] = servicer.overrides
    assert request.all_methods
    assert request.key == breaker("order-processor").key  # the target: no method
    assert (request.override, request.ttl.ToSeconds()) == (
        breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN, 7200)
    assert capsys.readouterr().out == (
        'every circuit breaker of app "order-processor" (spec default/myresiliency) forced '
        "open for 2h: 2 existing (order-processor:orders, order-processor:pay), and every one "
        "first used later\n"
    )


def test_all_methods_names_the_first_five_breakers_and_counts_the_others(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("bulk", f"m{i}") for i in range(7)]
    assert run(address, "disable", "bulk", "--all-methods", "--reason", "r") == 0
    assert "7 existing (bulk:m0, bulk:m1, bulk:m2, bulk:m3, bulk:m4, and 2 more)" in (
        capsys.readouterr().out
    )


def test_all_methods_by_full_target_key_needs_no_breaker_and_clears_as_json(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    assert run(address, "open", "default/myresiliency/app/inventory", "--all-methods",
               "--reason", "r") == 0
    assert servicer.list_requests == []  # a full key needs no lookup
    assert capsys.readouterr().out == (
        'every circuit breaker of app "inventory" (spec default/myresiliency) forced open: '
        "0 existing, and every one first used later\n"
    )
    servicer.target_overrides = [target_override("inventory")]
    assert run(address, "clear", "inventory", "--all-methods", "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == {"breakers": [], "targetOverride": None}
    assert servicer.overrides[-1][0].override == breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("order-processor:orders", "not one breaker 'order-processor:orders'"),
        ("default/myresiliency/app/order-processor/orders", "leave the method out"),
    ],
)
def test_all_methods_with_one_breaker_named_exits_2(
    name: str, says: str, service: tuple[ScriptedBreakers, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    servicer, address = service
    assert run(address, "open", name, "--all-methods", "--reason", "r") == ExitCode.USAGE
    assert says in capsys.readouterr().err
    assert servicer.overrides == []


def test_all_methods_on_an_unknown_or_ambiguous_target_name_exits_1(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders"),
                         breaker("order-processor", "orders", spec="canary")]

    assert run(address, "open", "order-procesor", "--all-methods", "--reason", "r") == 1
    err = capsys.readouterr().err
    assert 'no circuit breaker of a target named "order-procesor" (did you mean ' \
           '"order-processor"?); to set it before any agent uses a breaker of the target, ' \
           "name the target by its full key NAMESPACE/SPEC/KIND/TARGET" in err
    assert run(address, "open", "order-processor", "--all-methods", "--reason", "r") == 1
    err = capsys.readouterr().err
    assert "default/canary/app/order-processor\n" in err
    assert "default/myresiliency/app/order-processor\n" in err
    assert "is a target of 2 specs or kinds" in err
    assert servicer.overrides == []
    assert run(address, "open", "order-processor", "--spec", "canary", "--all-methods",
               "--reason", "r") == 0


def test_list_shows_target_overrides_under_the_table_and_in_json(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.breakers = [breaker("order-processor", "orders")]
    servicer.target_overrides = [target_override("inventory", reason="db migration")]

    assert run(address, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:4] == ["", "overrides on every method (--all-methods):"]
    assert lines[4].split() == ["TARGET", "OVERRIDE", "REASON", "SET-BY", "EXPIRES"]
    assert lines[5].split() == ["default/myresiliency/app/inventory", "force-open", "db",
                                "migration", "alice@ops", "-"]
    assert run(address, "list", "-o", "json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["targetOverrides"] == [{
        "name": "default/myresiliency/app/inventory",
        "key": {"namespace": "default", "spec": "myresiliency", "kind": "app",
                "target": "inventory", "method": ""},
        "override": {"override": "force-open", "reason": "db migration", "expireTime": None,
                     "setBy": "alice@ops"},
    }]
    servicer.breakers = []
    assert run(address, "list") == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "overrides on every method (--all-methods):"
    assert 'no circuit breakers found in namespace "default"' in captured.err


# ---- watch --------------------------------------------------------------------------


def watch_event(
    revision: str, b: breaker_pb2.Breaker, snapshot: bool = False
) -> breaker_pb2.WatchBreakersResponse:
    return breaker_pb2.WatchBreakersResponse(revision=revision, snapshot=snapshot, breaker=b)


class Lines:
    """A text sink that collects what was written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_watch_resumes_from_the_last_revision_after_a_broken_stream(
    service: tuple[ScriptedBreakers, str],
) -> None:
    servicer, address = service
    servicer.watches = [
        WatchScript(
            [watch_event("1-0", breaker("a"), snapshot=True), watch_event("3-0", breaker("b"))],
            grpc.StatusCode.UNAVAILABLE,
        ),
        WatchScript([], None),  # the server closed the stream without news
        WatchScript(
            [watch_event("4-0", breaker("a", state=breaker_pb2.BREAKER_STATE_OPEN))],
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    ]
    out, delays = Lines(), []
    request = breaker_pb2.WatchBreakersRequest(namespace="default", app_id="a")

    with BreakerServiceClient(address) as client:
        watcher = BreakerWatcher(client, request, JsonLinesSink(out), sleep=delays.append)  # type: ignore[arg-type]
        with pytest.raises(CommandFailed) as stopped:
            watcher.run()

    assert stopped.value.exit_code == ExitCode.REJECTED  # not retryable
    assert [(r.namespace, r.app_id, r.from_revision) for r in servicer.watch_requests] == [
        ("default", "a", ""),
        ("default", "a", "3-0"),
        ("default", "a", "3-0"),
    ]
    events = [json.loads(line) for line in out.text.splitlines()]
    assert [(e["revision"], e["snapshot"], e["breaker"]["state"]) for e in events] == [
        ("1-0", True, "closed"),
        ("3-0", False, "closed"),
        ("4-0", False, "open"),
    ]
    assert len(delays) == 2


def test_watch_gives_up_with_exit_3_when_the_server_stays_unreachable() -> None:
    delays: list[float] = []
    address = f"127.0.0.1:{free_port()}"
    with BreakerServiceClient(address) as client:
        watcher = BreakerWatcher(
            client,
            breaker_pb2.WatchBreakersRequest(),
            JsonLinesSink(Lines()),  # type: ignore[arg-type]
            max_attempts=4,
            sleep=delays.append,
        )
        with pytest.raises(CommandFailed) as stopped:
            watcher.run()

    assert stopped.value.exit_code == ExitCode.UNREACHABLE
    assert address in str(stopped.value)
    assert delays == [0.25, 0.5, 1.0]  # backoff between the 4 attempts, then give up


def test_watch_command_prints_json_lines_when_piped(
    service: tuple[ScriptedBreakers, str], capsys: pytest.CaptureFixture[str]
) -> None:
    servicer, address = service
    servicer.watches = [
        WatchScript(
            [watch_event("7", breaker("a"), snapshot=True)], grpc.StatusCode.INVALID_ARGUMENT
        )
    ]

    assert run(address, "watch", "--from", "5", "-A") == ExitCode.REJECTED

    assert servicer.watch_requests[0].from_revision == "5"
    assert servicer.watch_requests[0].namespace == ""
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["revision"] == "7"


def test_ctrl_c_ends_a_watch_with_exit_0(
    service: tuple[ScriptedBreakers, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    servicer, address = service
    servicer.watches = [WatchScript([watch_event("1", breaker("a"))], None)]
    interrupted = threading.Event()

    class InterruptingOut(Lines):
        def flush(self) -> None:
            if not interrupted.is_set():  # one Ctrl-C, while the watch writes
                interrupted.set()
                raise KeyboardInterrupt

        def isatty(self) -> bool:
            return False

    monkeypatch.setattr("sys.stdout", InterruptingOut())
    assert run(address, "watch") == ExitCode.OK
    assert interrupted.is_set()


def test_watch_broken_during_the_snapshot_asks_for_a_new_snapshot(
    service: tuple[ScriptedBreakers, str],
) -> None:
    servicer, address = service
    servicer.watches = [
        WatchScript([watch_event("5-0", breaker("a"), snapshot=True)], grpc.StatusCode.UNAVAILABLE),
        WatchScript([], grpc.StatusCode.NOT_FOUND),
    ]
    with BreakerServiceClient(address) as client:
        watcher = BreakerWatcher(
            client,
            breaker_pb2.WatchBreakersRequest(),
            JsonLinesSink(Lines()),  # type: ignore[arg-type]
            sleep=lambda _: None,
        )
        with pytest.raises(CommandFailed):  # NOT_FOUND ends the script
            watcher.run()

    # Resuming at the snapshot's position would skip the breakers not sent yet.
    assert [r.from_revision for r in servicer.watch_requests] == ["", ""]
