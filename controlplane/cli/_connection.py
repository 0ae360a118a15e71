"""A thin synchronous client of ``fusebox.v1.SpecService`` for the CLI.

Every failed RPC becomes a ``CommandFailed`` carrying the CLI exit code and a
message written for people: which server could not be reached and how to start
one, or the server's own explanation (with every spec violation listed).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.message import Message

from fusebox.controlplane.cli._address import (
    ACCEPTED_FORMS,
    host_problem,
    parse_server_address,
)
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode, exit_code_for_status
from fusebox.v1 import (
    breaker_pb2,
    breaker_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    spec_pb2,
    spec_pb2_grpc,
)

DEFAULT_SERVER = "127.0.0.1:50051"
SERVER_ENV_VAR = "FUSEBOX_SERVER"
DEFAULT_TIMEOUT_SECONDS = 10.0
TOKEN_ENV_VAR = "FUSEBOX_TOKEN"
TLS_CA_ENV_VAR = "FUSEBOX_TLS_CA"
TLS_CERT_ENV_VAR = "FUSEBOX_TLS_CERT"
TLS_KEY_ENV_VAR = "FUSEBOX_TLS_KEY"

_Response = TypeVar("_Response", bound=Message)


def server_address(flag_value: str | None) -> str:
    """``--server`` if given, else ``$FUSEBOX_SERVER``, else the default local address.

    The value is checked (``_address``): a URL scheme, a missing port or any
    other form gRPC would only fail on when connecting is a usage error naming
    where the value came from and what is accepted.
    """
    if flag_value:
        text, source = flag_value, "--server"
    elif env := os.environ.get(SERVER_ENV_VAR):
        text, source = env, f"${SERVER_ENV_VAR}"
    else:
        return DEFAULT_SERVER
    try:
        parse_server_address(text)
    except ValueError as e:
        raise CommandFailed(
            f"{source} {text!r}: {e} (accepted: {ACCEPTED_FORMS})", ExitCode.USAGE
        ) from None
    return text


@dataclass(frozen=True, slots=True)
class ClientSecurity:
    """How the CLI proves who it is and checks who the server is (docs/security.md).

    ``tls_ca`` set: TLS, verifying the server against that CA; ``tls_cert`` +
    ``tls_key``: a client certificate (mTLS); ``token``: sent as
    ``authorization: Bearer <token>`` on every request.
    """

    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls) -> ClientSecurity:
        """$FUSEBOX_TLS_CA, $FUSEBOX_TLS_CERT, $FUSEBOX_TLS_KEY and $FUSEBOX_TOKEN."""
        return cls(
            os.environ.get(TLS_CA_ENV_VAR) or None, os.environ.get(TLS_CERT_ENV_VAR) or None,
            os.environ.get(TLS_KEY_ENV_VAR) or None, os.environ.get(TOKEN_ENV_VAR) or None,
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ClientSecurity:
        """The connection flags (``--tls-*``, ``--token``, ``--token-file``), else the env."""
        env = cls.from_env()
        token = getattr(args, "token", None)
        token_file = getattr(args, "token_file", None)
        if token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as e:
                raise CommandFailed(f"--token-file {token_file}: cannot read: {e.strerror}",
                                    ExitCode.USAGE) from None
        return cls(
            getattr(args, "tls_ca", None) or env.tls_ca,
            getattr(args, "tls_cert", None) or env.tls_cert,
            getattr(args, "tls_key", None) or env.tls_key,
            token or env.token,
        )

    @property
    def tls(self) -> bool:
        return any((self.tls_ca, self.tls_cert, self.tls_key))

    def open_channel(self, address: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A channel to ``address`` with this security."""
        if self.tls:
            if (self.tls_cert is None) != (self.tls_key is None):
                raise CommandFailed("--tls-cert and --tls-key go together", ExitCode.USAGE)
            credentials = grpc.ssl_channel_credentials(
                root_certificates=self._read(self.tls_ca, "--tls-ca"),
                private_key=self._read(self.tls_key, "--tls-key"),
                certificate_chain=self._read(self.tls_cert, "--tls-cert"),
            )
            channel = grpc.secure_channel(address, credentials, options=list(options))
        else:
            channel = grpc.insecure_channel(address, options=list(options))
        if self.token:
            return grpc.intercept_channel(channel, _BearerToken(self.token))
        return channel

    @staticmethod
    def _read(path: str | None, flag: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as e:
            raise CommandFailed(f"{flag} {path}: cannot read: {e.strerror}",
                                ExitCode.USAGE) from None


class _BearerToken(grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
                   grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds ``authorization: Bearer <token>`` to every call of the channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token.strip()}")

    def _details(self, details: Any) -> Any:
        return _CallDetails(details.method, details.timeout,
                            [*(details.metadata or ()), self._header], details.credentials,
                            details.wait_for_ready, details.compression)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, method: str, timeout: float | None, metadata: Any, credentials: Any,
                 wait_for_ready: bool | None, compression: Any) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class _ServiceClient:
    """One channel to the server; use as a context manager so it is closed."""

    def __init__(
        self,
        address: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        options: Sequence[tuple[str, Any]] = (),
        security: ClientSecurity | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        # None: only what the environment says ($FUSEBOX_TOKEN, $FUSEBOX_TLS_*).
        self.security = security if security is not None else ClientSecurity.from_env()
        self._channel = self.security.open_channel(address, options)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _invoke(
        self,
        rpc: Callable[..., Any],
        request: Message,
        response_type: type[_Response],
        metadata: Sequence[tuple[str, str]] = (),
    ) -> _Response:
        try:
            response = rpc(request, timeout=self.timeout, metadata=tuple(metadata) or None)
        except grpc.RpcError as err:
            raise self._failure(err) from None
        if not isinstance(response, response_type):  # the generated stubs are untyped
            raise TypeError(f"expected {response_type.__name__}, got {type(response).__name__}")
        return response

    def _failure(self, err: grpc.RpcError) -> CommandFailed:
        code: grpc.StatusCode = err.code()
        details: str = err.details() or ""
        exit_code = exit_code_for_status(code)
        if exit_code is ExitCode.UNREACHABLE:
            return CommandFailed(
                _unreachable_message(self.address, code, self.timeout, self.security), exit_code,
                status=code,
            )
        if code is grpc.StatusCode.UNAUTHENTICATED:
            hint = ("the token was not accepted" if self.security.token
                    else f"pass --token, --token-file or set ${TOKEN_ENV_VAR}")
            return CommandFailed(f"unauthenticated: {details} ({hint})", exit_code, status=code)
        if code is grpc.StatusCode.PERMISSION_DENIED:
            return CommandFailed(f"permission denied: {details}", exit_code, status=code)
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            violations = _violation_lines(err)
            if violations:
                errors = sum(1 for line in violations if ": warning: " not in line)
                return CommandFailed(
                    f"rejected: {errors} error(s) found, nothing was stored",
                    exit_code,
                    violations,
                    status=code,
                )
        return CommandFailed(self._rejection_message(code, details), exit_code, status=code)

    def _rejection_message(self, code: grpc.StatusCode, details: str) -> str:
        return _rejection_message(code, details)


class SpecServiceClient(_ServiceClient):
    """A client of ``fusebox.v1.SpecService``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 security: ClientSecurity | None = None) -> None:
        super().__init__(address, timeout, security=security)
        self._stub = spec_pb2_grpc.SpecServiceStub(self._channel)

    def apply(self, request: spec_pb2.ApplySpecRequest) -> spec_pb2.ApplySpecResponse:
        return self._invoke(self._stub.ApplySpec, request, spec_pb2.ApplySpecResponse)

    def get(self, request: spec_pb2.GetSpecRequest) -> spec_pb2.GetSpecResponse:
        return self._invoke(self._stub.GetSpec, request, spec_pb2.GetSpecResponse)

    def list(self, request: spec_pb2.ListSpecsRequest) -> spec_pb2.ListSpecsResponse:
        return self._invoke(self._stub.ListSpecs, request, spec_pb2.ListSpecsResponse)

    def delete(self, request: spec_pb2.DeleteSpecRequest) -> spec_pb2.DeleteSpecResponse:
        return self._invoke(self._stub.DeleteSpec, request, spec_pb2.DeleteSpecResponse)

    def history(
        self, request: spec_pb2.ListSpecRevisionsRequest
    ) -> spec_pb2.ListSpecRevisionsResponse:
        return self._invoke(
            self._stub.ListSpecRevisions, request, spec_pb2.ListSpecRevisionsResponse
        )

    def rollback(self, request: spec_pb2.RollbackSpecRequest) -> spec_pb2.RollbackSpecResponse:
        return self._invoke(self._stub.RollbackSpec, request, spec_pb2.RollbackSpecResponse)

    def resolve(self, request: spec_pb2.ResolvePoliciesRequest) -> spec_pb2.ResolvePoliciesResponse:
        return self._invoke(self._stub.ResolvePolicies, request, spec_pb2.ResolvePoliciesResponse)


# Watching outlives a server restart: keep the channel's own reconnect backoff
# short so a restarted server is found by the next attempt, not minutes later.
_FAST_RECONNECT_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class BudgetServiceClient(_ServiceClient):
    """A client of ``fusebox.v1.BudgetService``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 security: ClientSecurity | None = None) -> None:
        super().__init__(address, timeout, options=_FAST_RECONNECT_OPTIONS, security=security)
        self._stub = budget_pb2_grpc.BudgetServiceStub(self._channel)

    def list(self, request: budget_pb2.ListBudgetsRequest) -> budget_pb2.ListBudgetsResponse:
        return self._invoke(self._stub.ListBudgets, request, budget_pb2.ListBudgetsResponse)

    def get(self, request: budget_pb2.GetBudgetRequest) -> budget_pb2.GetBudgetResponse:
        return self._invoke(self._stub.GetBudget, request, budget_pb2.GetBudgetResponse)


class BreakerServiceClient(_ServiceClient):
    """A client of ``fusebox.v1.BreakerService``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 security: ClientSecurity | None = None) -> None:
        super().__init__(address, timeout, options=_FAST_RECONNECT_OPTIONS, security=security)
        self._stub = breaker_pb2_grpc.BreakerServiceStub(self._channel)

    def list(self, request: breaker_pb2.ListBreakersRequest) -> breaker_pb2.ListBreakersResponse:
        return self._invoke(self._stub.ListBreakers, request, breaker_pb2.ListBreakersResponse)

    def get(self, request: breaker_pb2.GetBreakerRequest) -> breaker_pb2.GetBreakerResponse:
        return self._invoke(self._stub.GetBreaker, request, breaker_pb2.GetBreakerResponse)

    def set_override(
        self, request: breaker_pb2.SetOverrideRequest, metadata: Sequence[tuple[str, str]] = ()
    ) -> breaker_pb2.SetOverrideResponse:
        return self._invoke(
            self._stub.SetOverride, request, breaker_pb2.SetOverrideResponse, metadata
        )

    def reset(
        self, request: breaker_pb2.ResetBreakerRequest, metadata: Sequence[tuple[str, str]] = ()
    ) -> breaker_pb2.ResetBreakerResponse:
        return self._invoke(
            self._stub.ResetBreaker, request, breaker_pb2.ResetBreakerResponse, metadata
        )

    def watch(
        self, request: breaker_pb2.WatchBreakersRequest
    ) -> Iterator[breaker_pb2.WatchBreakersResponse]:
        """The raw event stream, without a deadline; iterating raises ``grpc.RpcError``.

        The caller decides which failures to retry; ``failure`` turns the last
        one into a ``CommandFailed``.
        """
        stream: Iterator[breaker_pb2.WatchBreakersResponse] = self._stub.WatchBreakers(request)
        return stream

    def failure(self, err: grpc.RpcError) -> CommandFailed:
        """The ``CommandFailed`` (message and exit code) for a failed breaker RPC."""
        return self._failure(err)

    def _rejection_message(self, code: grpc.StatusCode, details: str) -> str:
        if code is grpc.StatusCode.NOT_FOUND:
            return details or "circuit breaker not found"
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return f"the server at {self.address} does not offer BreakerService ({details})"
        return f"{str(code.name).lower().replace('_', ' ')}: {details}"


def _violation_lines(err: grpc.RpcError) -> list[str]:
    # Imported here: grpc_status is a server-side extra the CLI needs only on errors.
    from fusebox.controlplane.wire_errors import format_violation, violations_from_rpc_error

    return [format_violation(v) for v in violations_from_rpc_error(err)]


_CONFLICT_CODES = frozenset({grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION})


def _rejection_message(code: grpc.StatusCode, details: str) -> str:
    # The server's messages name the spec and revision already; add only what
    # kind of refusal it was.
    if code is grpc.StatusCode.NOT_FOUND:
        return details or "not found"
    if code in _CONFLICT_CODES:
        return f"revision conflict: {details}"
    return f"{str(code.name).lower().replace('_', ' ')}: {details}"


def _unreachable_message(
    address: str, code: grpc.StatusCode, timeout: float, security: ClientSecurity
) -> str:
    # A name that does not resolve fails like a server that is down; say which.
    problem = host_problem(address)
    if problem is not None:
        return (
            f"cannot reach the Fusebox server at {address}: {problem}; check the name, "
            "or give an IP address"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        why = f"no answer within {timeout:g}s"
    else:
        why = "connection failed"
    # A TLS mismatch looks like an unreachable server; say which side to check.
    tls = (" If the server uses TLS, check --tls-ca (and --tls-cert/--tls-key for mTLS)."
           if security.tls else " If the server uses TLS, pass --tls-ca.")
    try:
        start_here = parse_server_address(address).is_host_port
    except ValueError:
        start_here = False
    start = (f"Start one with `fusebox serve --listen {address}`, or point"
             if start_here else "Check that a server listens there, or point")
    return (
        f"cannot reach the Fusebox server at {address} ({why}). "
        f"{start} --server / {SERVER_ENV_VAR} at a running server.{tls}"
    )
