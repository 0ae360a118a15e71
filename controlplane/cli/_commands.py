"""The command handlers: each takes the parsed arguments and returns an exit code.

Handlers print results to stdout and notes to stderr, and raise
``CommandFailed`` to stop with an error (``main`` prints it).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from fusebox.controlplane.cli._connection import (
    SERVER_ENV_VAR,
    ClientSecurity,
    SpecServiceClient,
    server_address,
)
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode
from fusebox.controlplane.cli._offline import check_sources, latest_per_spec
from fusebox.controlplane.cli._output import (
    applied_line,
    history_table,
    history_to_json,
    render_json,
    spec_ref,
    spec_to_json,
    specs_table,
    specs_yaml,
)
from fusebox.controlplane.cli._resolved_view import resolved_table, resolved_to_json
from fusebox.controlplane.cli._sources import Source, read_sources
from fusebox.v1 import policy_pb2, spec_pb2


def note(message: str) -> None:
    print(message, file=sys.stderr)


def _client(args: argparse.Namespace) -> SpecServiceClient:
    return SpecServiceClient(server_address(args.server), timeout=args.timeout,
                             security=ClientSecurity.from_args(args))


# ---- serve --------------------------------------------------------------------


def serve(args: argparse.Namespace) -> int:
    # Imported here: the server pulls in grpc.aio, the stores and redis, which
    # client commands never need.
    from fusebox.controlplane.server import ServerConfig, run

    config = ServerConfig(
        listen=args.listen,
        store_url=args.store,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        log_format=args.log_format,
        log_level=args.log_level,
        http_listen=args.http_listen,
        console=args.console,
        breaker_store_url=args.breaker_store,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tls_client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None,
        tokens_file=Path(args.tokens_file) if args.tokens_file else None,
        insecure=args.insecure,
        budget_refresh=args.budget_refresh,
        budget_lease=args.budget_lease,
    )
    return run(config)


# ---- token ------------------------------------------------------------------------


def token_hash(args: argparse.Namespace) -> int:
    from fusebox.controlplane.server.security.tokens import hash_token

    token = sys.stdin.readline().strip()
    if not token:
        raise CommandFailed("no token on stdin (e.g. `echo $TOKEN | fusebox token hash`)",
                            ExitCode.USAGE)
    print(hash_token(token))
    return ExitCode.OK


def token_create(args: argparse.Namespace) -> int:
    from fusebox.controlplane.server.security.tokens import (
        Role,
        TokenEntry,
        entry_yaml,
        hash_token,
        new_token,
    )

    role = Role(args.role)
    if role is Role.AGENT and not args.apps:
        raise CommandFailed("an agent token needs at least one --app", ExitCode.USAGE)
    if role is not Role.AGENT and args.apps:
        raise CommandFailed("--app binds agent tokens only (use --role agent)", ExitCode.USAGE)
    token = new_token()
    entry = TokenEntry(args.name, hash_token(token), role, frozenset(args.apps), args.namespace)
    print(f"token: {token}")
    print("# add under `tokens:` in the tokens file, then `kill -HUP` the server:")
    print(entry_yaml(entry))
    note("The token is shown once and not stored anywhere; keep it in a secret store.")
    return ExitCode.OK


# ---- apply / validate -----------------------------------------------------------


def apply(args: argparse.Namespace) -> int:
    sources = read_sources(args.filenames, note)
    if args.expected_revision is not None and len(sources) != 1:
        raise CommandFailed(
            f"--expected-revision needs exactly one file, got {len(sources)}", ExitCode.USAGE
        )
    request = apply_request(sources, dry_run=args.dry_run)
    if args.expected_revision is not None:
        request.expected_revision = args.expected_revision
    with _client(args) as client:
        response = client.apply(request)
    print_warnings(response.warnings)
    for applied in response.specs:
        print(applied_line(applied, args.dry_run))
    return ExitCode.OK


def apply_request(sources: list[Source], dry_run: bool = False) -> spec_pb2.ApplySpecRequest:
    """One request for every file: they are validated together (a target may
    name a policy another file defines, as in Dapr) and stored all or nothing."""
    if len(sources) == 1:  # `yaml` is what servers before `files` understand
        return spec_pb2.ApplySpecRequest(
            yaml=sources[0].text, source_name=sources[0].name, dry_run=dry_run
        )
    return spec_pb2.ApplySpecRequest(
        files=[spec_pb2.SpecFile(yaml=s.text, source_name=s.name) for s in sources],
        dry_run=dry_run,
    )


def print_warnings(warnings: Iterable[spec_pb2.SpecViolation]) -> None:
    """``FILE:LINE:COL: PATH: warning: MESSAGE`` on stderr, one per line."""
    from fusebox.controlplane.wire_errors import format_violation

    for warning in warnings:
        note(format_violation(warning))


def validate(args: argparse.Namespace) -> int:
    sources = read_sources(args.filenames, note)
    checked = check_sources(sources)
    for line in checked.lines():
        print(line)
    errors, warnings = checked.error_count, checked.warning_count
    if errors:
        note(f"{errors} error(s), {warnings} warning(s) found; "
             "fix the errors before `fusebox apply`")
        return ExitCode.REJECTED
    for document in checked.documents:
        print(f"{spec_ref(document.spec.namespace, document.spec.name)} valid")
    if warnings:
        note(f"{warnings} warning(s): the specs are valid, but have a look")
    return ExitCode.OK


# ---- get / delete / history / rollback --------------------------------------------


def get_specs(args: argparse.Namespace) -> int:
    if args.name and args.all_namespaces:
        raise CommandFailed("a spec NAME cannot be combined with -A", ExitCode.USAGE)
    with _client(args) as client:
        if args.name:
            found = client.get(spec_pb2.GetSpecRequest(namespace=args.namespace, name=args.name))
            specs = [found.spec]
        else:
            namespace = "" if args.all_namespaces else args.namespace
            specs = list(client.list(spec_pb2.ListSpecsRequest(namespace=namespace)).specs)
    specs.sort(key=lambda s: (s.namespace, s.name))
    if args.output == "json":
        shown = spec_to_json(specs[0]) if args.name else {"specs": [spec_to_json(s) for s in specs]}
        print(render_json(shown))
    elif not specs:
        where = "any namespace" if args.all_namespaces else f'namespace "{args.namespace}"'
        note(f"no specs found in {where}")
    elif args.output == "yaml":
        print(specs_yaml(specs))
    else:
        print(specs_table(specs, now=time.time()))
    return ExitCode.OK


def delete_spec(args: argparse.Namespace) -> int:
    request = spec_pb2.DeleteSpecRequest(namespace=args.namespace, name=args.name)
    if args.expected_revision is not None:
        request.expected_revision = args.expected_revision
    with _client(args) as client:
        response = client.delete(request)
    print(f"{spec_ref(args.namespace, args.name)} deleted (revision {response.revision})")
    return ExitCode.OK


def history(args: argparse.Namespace) -> int:
    request = spec_pb2.ListSpecRevisionsRequest(namespace=args.namespace, name=args.name)
    with _client(args) as client:
        revisions = list(client.history(request).revisions)
    if args.output == "json":
        print(render_json(history_to_json(args.namespace, args.name, revisions)))
    else:
        print(history_table(revisions, now=time.time()))
    return ExitCode.OK


def rollback(args: argparse.Namespace) -> int:
    request = spec_pb2.RollbackSpecRequest(
        namespace=args.namespace, name=args.name, to_revision=args.to
    )
    if args.expected_revision is not None:
        request.expected_revision = args.expected_revision
    with _client(args) as client:
        response = client.rollback(request)
    print_warnings(response.warnings)
    applied = response.spec
    ref = spec_ref(args.namespace, args.name)
    if applied.changed:
        print(f"{ref} rolled back to revision {args.to} (revision {applied.revision})")
    else:
        print(
            f"{ref} unchanged: already the content of revision {args.to} "
            f"(revision {applied.revision})"
        )
    return ExitCode.OK


# ---- resolve ----------------------------------------------------------------------


def resolve(args: argparse.Namespace) -> int:
    if args.filenames:
        policies = _resolve_offline(args)
    else:
        request = spec_pb2.ResolvePoliciesRequest(namespace=args.namespace, app_id=args.app_id)
        with _client(args) as client:
            policies = client.resolve(request).policies
    if args.output == "json":
        print(render_json(resolved_to_json(policies)))
    else:
        print(resolved_table(policies))
    return ExitCode.OK


def _resolve_offline(args: argparse.Namespace) -> policy_pb2.ResolvedPolicies:
    from fusebox.agent.policy import resolved_to_proto
    from fusebox.controlplane.resolve import resolve_policies

    checked = check_sources(read_sources(args.filenames, note))
    if checked.error_count:
        raise CommandFailed(f"{checked.error_count} error(s) found in the spec files",
                            details=checked.lines())
    for line in checked.lines():
        note(line)  # only warnings: the files resolve as Dapr would load them
    specs = [d.spec for d in latest_per_spec(checked.documents)]
    return resolved_to_proto(resolve_policies(specs, args.namespace, args.app_id))


# ---- run ------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    # Imported here: the sidecar pulls in aiohttp (the `sidecar` extra).
    try:
        from fusebox.controlplane.sidecar import SidecarOptions
        from fusebox.controlplane.sidecar import run as run_sidecar
        from fusebox.controlplane.sidecar._local_server import ensure_local_control_plane
        from fusebox.controlplane.sidecar._run import command_after_dashes
    except ImportError as e:
        raise CommandFailed(f"fusebox run needs the sidecar extra "
                            f"(pip install 'fusebox-resilience[sidecar]'): {e}",
                            ExitCode.USAGE) from None
    from fusebox.controlplane.spec_store import default_data_dir

    # Checked like every command's --server (a scheme or a missing port is a usage
    # error); without one, the local control plane is started on demand.
    server = (server_address(args.server)
              if args.server or os.environ.get(SERVER_ENV_VAR) else None)
    # The flags, else the FUSEBOX_* variables, as the agent's from_env reads them.
    token = args.token
    if args.token_file:
        token = ClientSecurity.from_args(args).token
    try:
        options = SidecarOptions.from_flags(
            command=command_after_dashes(args.command), app_id=args.app_id,
            namespace=args.namespace, server=server, token=token, tls_ca=args.tls_ca,
            tls_cert=args.tls_cert, tls_key=args.tls_key, app_port=args.app_port,
            dapr_http_port=args.dapr_http_port,
        )
    except ValueError as e:
        raise CommandFailed(str(e), ExitCode.USAGE) from None
    data_dir = default_data_dir()
    if options.server is None:
        options = dataclasses.replace(options, server=ensure_local_control_plane(data_dir))
        note(f"using the local control plane at {options.server} (data in {data_dir})")
    assert options.server is not None
    if args.resources_path:
        _apply_resources(args, options.server, ClientSecurity(
            options.tls_ca, options.tls_cert, options.tls_key, options.token))
    return run_sidecar(options, data_dir)


def _apply_resources(args: argparse.Namespace, server: str, security: ClientSecurity) -> None:
    sources = []
    for directory in args.resources_path:
        try:
            sources.extend(read_sources([directory], note))
        except CommandFailed as failure:  # a resources dir with only components is fine
            note(f"note: {failure.message}")
    if not sources:
        return
    with SpecServiceClient(server, timeout=args.timeout, security=security) as client:
        # Together, as daprd loads a resources directory: one file may name a
        # policy another defines.
        response = client.apply(apply_request(sources))
    print_warnings(response.warnings)
    for applied in response.specs:
        note(applied_line(applied, False))
