"""The ``fusebox breakers`` command handlers (list, get, watch, overrides, reset).

Each takes the parsed arguments and returns an exit code, like the handlers in
``_commands``; failures raise ``CommandFailed``.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
import time

import grpc
import yaml
from google.protobuf.duration_pb2 import Duration

from fusebox.agent.breaker import BreakerOverride, BreakerState
from fusebox.agent.wire_enums import OVERRIDE_TO_PB, STATE_TO_PB
from fusebox.controlplane.cli._breaker_ref import (
    BreakerRef,
    list_request_for,
    parse_breaker_ref,
    parse_target_ref,
    suggestions,
    the_one_match,
    the_one_target,
)
from fusebox.controlplane.cli._breaker_view import (
    TARGET_OVERRIDES_TITLE,
    breaker_details,
    breaker_to_json,
    breakers_table,
    key_path,
    shown_name,
    state_name,
    target_override_to_json,
    target_overrides_table,
    target_text,
)
from fusebox.controlplane.cli._breaker_watch import BreakerWatcher, JsonLinesSink, LiveTableSink
from fusebox.controlplane.cli._connection import (
    BreakerServiceClient,
    ClientSecurity,
    server_address,
)
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode
from fusebox.controlplane.cli._output import format_duration, render_json
from fusebox.v1 import breaker_pb2, policy_pb2

STATE_CHOICES = {
    state.value: STATE_TO_PB[state]
    for state in (BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN)
}
# The server records who set an override (``OverrideInfo.set_by``); the request
# has no field for it, so the CLI says who it is in call metadata.
USER_METADATA_KEY = "x-fusebox-user"


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def _client(args: argparse.Namespace) -> BreakerServiceClient:
    return BreakerServiceClient(server_address(args.server), timeout=args.timeout,
                                security=ClientSecurity.from_args(args))


def _namespace_filter(args: argparse.Namespace) -> str:
    return "" if args.all_namespaces else args.namespace


def _ref(args: argparse.Namespace) -> BreakerRef:
    return parse_breaker_ref(args.name, namespace=args.namespace, spec=args.spec)


def _resolved_key(
    client: BreakerServiceClient, ref: BreakerRef, hint: str = ""
) -> policy_pb2.BreakerKey:
    """The key ``ref`` names: as given, or the one listed breaker its display name
    matches (``hint`` ends the message when none does)."""
    if ref.key is not None:
        return ref.key
    return the_one_match(ref, client.list(list_request_for(ref)).breakers, hint).key


def _with_suggestions(
    client: BreakerServiceClient, key: policy_pb2.BreakerKey, failure: CommandFailed
) -> CommandFailed:
    """``failure``, with the closest existing full keys added when the server
    found no breaker ``key`` (a full key given on the command line)."""
    if failure.status is not grpc.StatusCode.NOT_FOUND:
        return failure
    try:
        listed = client.list(breaker_pb2.ListBreakersRequest(namespace=key.namespace)).breakers
    except CommandFailed:
        return failure
    hint = suggestions(key_path(key), [key_path(b.key) for b in listed])
    return CommandFailed(failure.message + hint, failure.exit_code, failure.details,
                         failure.status)


def _operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (containers without /etc/passwd entry)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# ---- list / get -----------------------------------------------------------------


def list_breakers(args: argparse.Namespace) -> int:
    request = breaker_pb2.ListBreakersRequest(
        namespace=_namespace_filter(args),
        app_id=args.app or "",
        state=STATE_CHOICES[args.state] if args.state else breaker_pb2.BREAKER_STATE_UNSPECIFIED,
    )
    with _client(args) as client:
        listed = client.list(request)
    breakers, rules = list(listed.breakers), list(listed.target_overrides)
    now = time.time()
    if args.output == "json":
        ordered = sorted(breakers, key=lambda b: key_path(b.key))
        print(render_json({
            "breakers": [breaker_to_json(b) for b in ordered],
            "targetOverrides": [target_override_to_json(r) for r in rules],
        }))
        return ExitCode.OK
    if breakers:
        print(breakers_table(breakers, now=now))
    else:
        where = "any namespace" if args.all_namespaces else f'namespace "{args.namespace}"'
        _note(f"no circuit breakers found in {where}")
    if rules:
        if breakers:
            print()
        print(TARGET_OVERRIDES_TITLE)
        print(target_overrides_table(rules, now=now))
    return ExitCode.OK


def get_breaker(args: argparse.Namespace) -> int:
    ref = _ref(args)
    with _client(args) as client:
        key = _resolved_key(client, ref)
        # GetBreaker even after a list: it is the call that promises the transitions.
        try:
            breaker = client.get(breaker_pb2.GetBreakerRequest(key=key)).breaker
        except CommandFailed as failure:
            raise _with_suggestions(client, key, failure) from None
    if args.output == "json":
        print(render_json(breaker_to_json(breaker)))
    elif args.output == "yaml":
        print(yaml.safe_dump(breaker_to_json(breaker), sort_keys=True).rstrip("\n"))
    else:
        print(breaker_details(breaker, now=time.time()))
    return ExitCode.OK


# ---- watch ----------------------------------------------------------------------


def watch_breakers(args: argparse.Namespace) -> int:
    request = breaker_pb2.WatchBreakersRequest(
        namespace=_namespace_filter(args), app_id=args.app or "", from_revision=args.from_revision
    )
    live = args.output != "json" and sys.stdout.isatty()
    with _client(args) as client:
        title = f"circuit breakers at {client.address}"
        sink = LiveTableSink(sys.stdout, title) if live else JsonLinesSink(sys.stdout)
        watcher = BreakerWatcher(client, request, sink, note=_note)
        try:
            watcher.run()
        except KeyboardInterrupt:
            return ExitCode.OK  # Ctrl-C is how a watch ends
        # A reader gone (`| head -1`) ends it too: main() handles that for every command.
    return ExitCode.OK


# ---- overrides / reset --------------------------------------------------------------

_OVERRIDES = {
    "open": BreakerOverride.FORCE_OPEN,
    "close": BreakerOverride.FORCE_CLOSED,
    "disable": BreakerOverride.DISABLED,
    "clear": None,
}
# A display name finds only breakers that exist; an override ahead of use names the key.
_AHEAD_OF_USE_HINT = (
    "to set an override on a breaker no agent has used yet, name it by its full key "
    "NAMESPACE/SPEC/KIND/TARGET[/METHOD] (`fusebox resolve --app-id CALLER` shows the spec)"
)
_TARGET_AHEAD_OF_USE_HINT = (
    "to set it before any agent uses a breaker of the target, name the target by its full "
    "key NAMESPACE/SPEC/KIND/TARGET (`fusebox resolve --app-id CALLER` shows the spec)"
)
_NAMES_SHOWN = 5  # breakers named in the text answer to --all-methods (-o json has them all)
_OVERRIDE_VERBS = {
    "open": "forced open",
    "close": "forced closed",
    "disable": "disabled",
    "clear": "override cleared",
}


def _override_request(args: argparse.Namespace) -> breaker_pb2.SetOverrideRequest:
    request = breaker_pb2.SetOverrideRequest(
        override=OVERRIDE_TO_PB[_OVERRIDES[args.override]], reason=args.reason or "",
        all_methods=args.all_methods,
    )
    ttl: float | None = getattr(args, "ttl", None)
    if ttl is not None:
        request.ttl.CopyFrom(Duration(seconds=int(ttl), nanos=round((ttl % 1) * 1e9)))
    return request


def set_override(args: argparse.Namespace) -> int:
    """``open``/``close``/``disable``/``clear``: which one is ``args.override``;
    with ``--all-methods``, of every breaker of a target."""
    if args.all_methods:
        return _set_target_override(args)
    ref = _ref(args)
    request = _override_request(args)
    ttl: float | None = getattr(args, "ttl", None)
    with _client(args) as client:
        hint = _AHEAD_OF_USE_HINT if _OVERRIDES[args.override] is not None else ""
        request.key.CopyFrom(_resolved_key(client, ref, hint))
        try:
            breaker = client.set_override(
                request, metadata=[(USER_METADATA_KEY, _operator())]
            ).breaker
        except CommandFailed as failure:
            raise _with_suggestions(client, request.key, failure) from None
    if args.output == "json":
        print(render_json(breaker_to_json(breaker)))
        return ExitCode.OK
    for_how_long = f" for {format_duration(ttl)}" if ttl is not None else ""
    print(
        f'circuit breaker "{shown_name(breaker)}" {_OVERRIDE_VERBS[args.override]}{for_how_long} '
        f"(state {state_name(breaker.state)}, generation {breaker.generation})"
    )
    return ExitCode.OK


def _set_target_override(args: argparse.Namespace) -> int:
    ref = parse_target_ref(args.name, namespace=args.namespace, spec=args.spec)
    request = _override_request(args)
    ttl: float | None = getattr(args, "ttl", None)
    with _client(args) as client:
        if ref.key is not None:
            request.key.CopyFrom(ref.key)
        else:
            hint = _TARGET_AHEAD_OF_USE_HINT if _OVERRIDES[args.override] is not None else ""
            request.key.CopyFrom(the_one_target(ref, client.list(list_request_for(ref)), hint))
        response = client.set_override(request, metadata=[(USER_METADATA_KEY, _operator())])
    breakers = sorted(response.breakers, key=lambda b: key_path(b.key))
    if args.output == "json":
        rule = response.target_override if response.HasField("target_override") else None
        print(render_json({
            "breakers": [breaker_to_json(b) for b in breakers],
            "targetOverride": None if rule is None else target_override_to_json(rule),
        }))
        return ExitCode.OK
    shown = [shown_name(b) for b in breakers[:_NAMES_SHOWN]]
    if len(breakers) > _NAMES_SHOWN:
        shown.append(f"and {len(breakers) - _NAMES_SHOWN} more")
    existing = f"{len(breakers)} existing" + (f" ({', '.join(shown)})" if shown else "")
    what = f"every circuit breaker of {target_text(request.key)}"
    if _OVERRIDES[args.override] is None:
        print(f"{what}: override cleared on {existing}")
    else:
        for_how_long = f" for {format_duration(ttl)}" if ttl is not None else ""
        print(f"{what} {_OVERRIDE_VERBS[args.override]}{for_how_long}: {existing}, "
              "and every one first used later")
    return ExitCode.OK


def reset_breaker(args: argparse.Namespace) -> int:
    ref = _ref(args)
    with _client(args) as client:
        request = breaker_pb2.ResetBreakerRequest(
            key=_resolved_key(client, ref), reason=args.reason
        )
        try:
            breaker = client.reset(request, metadata=[(USER_METADATA_KEY, _operator())]).breaker
        except CommandFailed as failure:
            raise _with_suggestions(client, request.key, failure) from None
    if args.output == "json":
        print(render_json(breaker_to_json(breaker)))
        return ExitCode.OK
    print(
        f'circuit breaker "{shown_name(breaker)}" reset '
        f"(state {state_name(breaker.state)}, generation {breaker.generation})"
    )
    return ExitCode.OK
