"""The ``fusebox`` command line: every command, flag and default in one place."""

from __future__ import annotations

import argparse

from fusebox.controlplane.cli import _breakers, _budgets, _commands
from fusebox.controlplane.cli._audit import add_audit_command
from fusebox.controlplane.cli._connection import (
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT_SECONDS,
    SERVER_ENV_VAR,
    TLS_CA_ENV_VAR,
    TOKEN_ENV_VAR,
)
from fusebox.controlplane.spec import parse_duration

DEFAULT_NAMESPACE = "default"
_SPEC_RESOURCES = ("specs", "spec", "resiliency", "resiliencies")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _revision(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a revision number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a revision >= 0, got {text!r}")
    return value


def _add_connection_flags(parser: argparse.ArgumentParser, default: object) -> None:
    # Accepted before and after the command (`fusebox --server X get specs` and
    # `fusebox get specs --server X`); the per-command copy defaults to SUPPRESS
    # so it does not overwrite a value given before the command.
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=default,
        help=f"control plane address (default: ${SERVER_ENV_VAR} or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS if default is None else default,
        help=f"deadline of each request (default: {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    parser.add_argument(
        "--tls-ca", metavar="PEM", default=default,
        help=f"use TLS; verify the server against this CA (default: ${TLS_CA_ENV_VAR})",
    )
    parser.add_argument("--tls-cert", metavar="PEM", default=default,
                        help="client certificate, for servers that require mTLS")
    parser.add_argument("--tls-key", metavar="PEM", default=default,
                        help="the client certificate's private key")
    token = parser.add_mutually_exclusive_group()
    token.add_argument("--token", default=default,
                       help=f"bearer token (default: ${TOKEN_ENV_VAR}; prefer --token-file)")
    token.add_argument("--token-file", metavar="FILE", default=default,
                       help="read the bearer token from FILE")


def _add_namespace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-n",
        "--namespace",
        default=DEFAULT_NAMESPACE,
        help=f"namespace of the spec (default: {DEFAULT_NAMESPACE})",
    )


def _add_filenames(parser: argparse.ArgumentParser, required: bool, what: str) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="filenames",
        action="append",
        required=required,
        default=[],
        metavar="FILE|DIR|-",
        help=f"{what}; a directory means its *.yaml/*.yml files, '-' reads stdin; repeatable",
    )


def _add_expected_revision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--expected-revision",
        type=_revision,
        metavar="N",
        help="only proceed if the spec is at revision N (0: it must not exist yet)",
    )


def _add_output(parser: argparse.ArgumentParser, *formats: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=formats,
        default=formats[0],
        help=f"output format (default: {formats[0]})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusebox",
        # argparse scans every argument with the top-level parser first: with
        # abbreviations on, a command's `--to` would be an ambiguous `--token`.
        allow_abbrev=False,
        description="Fusebox control plane: push Dapr Resiliency specs and inspect what apps get.",
    )
    _add_connection_flags(parser, default=None)
    client = argparse.ArgumentParser(add_help=False)
    _add_connection_flags(client, default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the control plane server")
    serve.add_argument("--listen", default=DEFAULT_SERVER, metavar="HOST:PORT")
    serve.add_argument(
        "--store", metavar="URL", help="redis://… or rediss://… (default: embedded store on disk)"
    )
    serve.add_argument("--data-dir", metavar="DIR", help="where the embedded store keeps its data")
    serve.add_argument("--log-format", choices=("text", "json"), default="text")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    serve.add_argument(
        "--http-listen", "--metrics-listen", dest="http_listen", metavar="HOST:PORT",
        help="serve HTTP on HOST:PORT: /metrics (Prometheus), /healthz (alive), "
             "/readyz (stores reachable, serving) and, with --console, the console "
             "(default: off; --metrics-listen is the old name)",
    )
    serve.add_argument(
        "--console", action="store_true",
        help="serve the operator's web console at /console/ on the HTTP port "
             "(default port 127.0.0.1:8686; see docs/console.md)",
    )
    serve.add_argument(
        "--breaker-store", metavar="URL",
        help="where breaker state lives (default: the --store Redis, else in memory)",
    )
    serve.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    serve.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca", metavar="PEM",
        help="require client certificates signed by this CA (mTLS)",
    )
    serve.add_argument(
        "--tokens-file", metavar="FILE",
        help="bearer tokens and their roles (YAML/JSON, see docs/security.md); "
        "reloaded on SIGHUP",
    )
    serve.add_argument(
        "--insecure", action="store_true",
        help="allow a non-loopback --listen address without authentication",
    )
    serve.add_argument(
        "--budget-refresh", type=_positive_seconds, default=0.25, metavar="SECONDS",
        help="how often fleet budgets are divided into instance shares (default: 0.25)",
    )
    serve.add_argument(
        "--budget-lease", type=_positive_seconds, default=2.0, metavar="SECONDS",
        help="how long a pushed budget share holds unless renewed; a departed instance's "
        "share is freed after it (default: 2)",
    )
    serve.set_defaults(handler=_commands.serve)

    _add_token_commands(commands)

    apply = commands.add_parser(
        "apply", parents=[client], help="validate and store specs on the server"
    )
    _add_filenames(apply, required=True, what="spec file(s) to apply")
    apply.add_argument(
        "--dry-run", action="store_true", help="validate on the server, store nothing"
    )
    _add_expected_revision(apply)
    apply.set_defaults(handler=_commands.apply)

    validate = commands.add_parser("validate", help="check spec files offline (no server)")
    _add_filenames(validate, required=True, what="spec file(s) to check")
    validate.set_defaults(handler=_commands.validate)

    get = commands.add_parser("get", parents=[client], help="show stored specs")
    get.add_argument("resource", choices=_SPEC_RESOURCES, metavar="specs")
    get.add_argument("name", nargs="?", metavar="NAME", help="one spec (default: all)")
    _add_namespace(get)
    get.add_argument("-A", "--all-namespaces", action="store_true", help="specs of every namespace")
    _add_output(get, "table", "yaml", "json")
    get.set_defaults(handler=_commands.get_specs)

    delete = commands.add_parser("delete", parents=[client], help="delete a spec")
    delete.add_argument("resource", choices=_SPEC_RESOURCES, metavar="spec")
    delete.add_argument("name", metavar="NAME")
    _add_namespace(delete)
    _add_expected_revision(delete)
    delete.set_defaults(handler=_commands.delete_spec)

    history = commands.add_parser("history", parents=[client], help="list a spec's revisions")
    history.add_argument("name", metavar="NAME")
    _add_namespace(history)
    _add_output(history, "table", "json")
    history.set_defaults(handler=_commands.history)

    rollback = commands.add_parser(
        "rollback", parents=[client], help="restore an earlier revision as a new one"
    )
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--to", type=_revision, required=True, metavar="REV")
    _add_namespace(rollback)
    _add_expected_revision(rollback)
    rollback.set_defaults(handler=_commands.rollback)

    resolve = commands.add_parser(
        "resolve", parents=[client], help="show the policies one app-id gets"
    )
    resolve.add_argument("--app-id", required=True, metavar="APP_ID")
    _add_namespace(resolve)
    _add_output(resolve, "table", "json")
    _add_filenames(resolve, required=False, what="resolve from these files offline")
    resolve.set_defaults(handler=_commands.resolve)

    _add_breaker_commands(commands, client)
    _add_budget_commands(commands, client)
    add_audit_command(commands, client)
    _add_run_command(commands, client)
    return parser


def _add_run_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: argparse.ArgumentParser,
) -> None:
    run = commands.add_parser(
        "run", parents=[client],
        help="run an app with a Dapr-compatible sidecar (like `dapr run`)",
        description="Start a sidecar (HTTP API on --dapr-http-port) and run COMMAND with "
        "DAPR_HTTP_PORT set. Without --server, a local control plane is started on demand "
        "(docs/sidecar.md).",
    )
    # Not required here: $FUSEBOX_APP_ID may give it (the FUSEBOX_* contract, docs/deploy.md).
    run.add_argument("--app-id", metavar="APP_ID", help="the app's id (default: $FUSEBOX_APP_ID)")
    run.add_argument("--app-port", type=int, metavar="PORT",
                     help="where the app listens (registered so other apps can call it)")
    run.add_argument("--dapr-http-port", type=int, metavar="PORT",
                     help="the sidecar's HTTP port (default: 3500, or a free port if taken)")
    run.add_argument("--resources-path", "--components-path", dest="resources_path",
                     action="append", metavar="DIR",
                     help="apply the Resiliency YAML files found here (others are skipped)")
    run.add_argument("-n", "--namespace",
                     help=f"namespace of the app (default: $FUSEBOX_NAMESPACE or "
                     f"{DEFAULT_NAMESPACE})")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    run.set_defaults(handler=_commands.run)


def _add_token_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    token = commands.add_parser("token", help="make bearer tokens for the server's tokens file")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    hash_ = actions.add_parser("hash", help="print the sha256 of the token read on stdin")
    hash_.set_defaults(handler=_commands.token_hash)
    create = actions.add_parser(
        "create", help="print a new random token (once) and its tokens-file entry"
    )
    create.add_argument("name", metavar="NAME", help="who holds it (shown in logs and audit)")
    create.add_argument("--role", required=True,
                        choices=("admin", "operator", "viewer", "agent"))
    create.add_argument("--app", dest="apps", action="append", default=[], metavar="APP_ID",
                        help="agent role: an app-id the token may connect as; repeatable")
    _add_namespace(create)
    create.set_defaults(handler=_commands.token_create)


# ---- fusebox breakers ---------------------------------------------------------------


def _ttl(text: str) -> float:
    # A bare number is milliseconds in a spec; as a TTL that is almost surely a
    # mistake (`--ttl 10` meaning ten minutes), so a unit is required here.
    if text.strip().lstrip("+-").isdigit():
        raise argparse.ArgumentTypeError(f"add a unit to the TTL {text!r}, e.g. 30s, 10m, 1h")
    try:
        seconds = parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"the TTL must be positive, got {text!r}")
    return seconds


def _reason(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the reason must not be blank")
    return text


def _add_breaker_ref(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        metavar="NAME",
        help="display name (order-processor:orders) or NAMESPACE/SPEC/KIND/TARGET[/METHOD]",
    )
    parser.add_argument(
        "-n", "--namespace", help="only breakers of this namespace (default: any namespace)"
    )
    parser.add_argument("--spec", help="only breakers of this spec")


def _add_breaker_scope(parser: argparse.ArgumentParser) -> None:
    _add_namespace(parser)
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="breakers of every namespace"
    )
    parser.add_argument(
        "--app", metavar="APP", help="only breakers of this target app-id/type/name"
    )


def _add_budget_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: argparse.ArgumentParser,
) -> None:
    budgets = commands.add_parser(
        "budgets", parents=[client],
        help="inspect fleet budgets (rate limits, retry budgets) and instances' shares",
    )
    actions = budgets.add_subparsers(dest="budgets_command", required=True, metavar="ACTION")
    list_ = actions.add_parser("list", parents=[client],
                               help="list budgets: fleet rate, use, refusals, instances")
    _add_namespace(list_)
    list_.add_argument("-A", "--all-namespaces", action="store_true",
                       help="budgets of every namespace")
    _add_output(list_, "table", "json")
    list_.set_defaults(handler=_budgets.list_budgets)
    get = actions.add_parser("get", parents=[client],
                             help="show one budget and every instance's share")
    get.add_argument("name", metavar="KEY-OR-NAME",
                     help="the budget's key (NAMESPACE/SPEC/KIND/TARGET_KIND/TARGET[@APP], as "
                     "listed), or its policy's name or target when that names one budget")
    get.add_argument("-n", "--namespace",
                     help="only budgets of this namespace (default: any namespace)")
    _add_output(get, "table", "json", "yaml")
    get.set_defaults(handler=_budgets.get_budget)


def _add_breaker_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client: argparse.ArgumentParser,
) -> None:
    breakers = commands.add_parser(
        "breakers", parents=[client], help="inspect and operate cluster-wide circuit breakers"
    )
    actions = breakers.add_subparsers(dest="breakers_command", required=True, metavar="ACTION")

    list_ = actions.add_parser("list", parents=[client], help="list breakers and their state")
    _add_breaker_scope(list_)
    list_.add_argument("--state", choices=tuple(_breakers.STATE_CHOICES))
    _add_output(list_, "table", "json")
    list_.set_defaults(handler=_breakers.list_breakers)

    get = actions.add_parser("get", parents=[client], help="show one breaker in detail")
    _add_breaker_ref(get)
    _add_output(get, "table", "json", "yaml")
    get.set_defaults(handler=_breakers.get_breaker)

    watch = actions.add_parser(
        "watch", parents=[client], help="follow changes (live table, or JSON lines when piped)"
    )
    _add_breaker_scope(watch)
    watch.add_argument(
        "--from", dest="from_revision", default="", metavar="REV", help="resume after revision REV"
    )
    _add_output(watch, "table", "json")
    watch.set_defaults(handler=_breakers.watch_breakers)

    overrides = {
        "open": "force the breaker open: every call fails fast",
        "close": "force the breaker closed: every call passes, outcomes not counted",
        "disable": "no breaker at all: every call passes, nothing counted",
        "clear": "remove the override; the state machine decides again",
    }
    for action, help_text in overrides.items():
        override = actions.add_parser(action, parents=[client], help=help_text)
        _add_breaker_ref(override)
        override.add_argument(
            "--all-methods", action="store_true",
            help="NAME is a target (order-processor, or NAMESPACE/SPEC/KIND/TARGET): every "
            "breaker of it, those that exist and those first used later (every method of an "
            "app, every actor id, both directions of a component)",
        )
        override.add_argument(
            "--reason", type=_reason, required=action != "clear", help="why (recorded)"
        )
        if action != "clear":
            override.add_argument(
                "--ttl", type=_ttl, metavar="DURATION", help="expire after this (e.g. 10m)"
            )
        _add_output(override, "text", "json")
        override.set_defaults(handler=_breakers.set_override, override=action)

    reset = actions.add_parser(
        "reset", parents=[client], help="back to closed with zeroed counts; clears any override"
    )
    _add_breaker_ref(reset)
    reset.add_argument("--reason", type=_reason, required=True, help="why (recorded)")
    _add_output(reset, "text", "json")
    reset.set_defaults(handler=_breakers.reset_breaker)
