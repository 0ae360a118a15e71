"""A thin synchronous client of ``fusebox.v1.SpecService`` for the CLI.

Every failed RPC becomes a ``CommandFailed`` carrying the CLI exit code and a
message written for people: which server could not be reached and how to start
one, or the server's own explanation (with every spec violation listed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.message import Message

from agent._proto.fusebox.v1 import breaker_pb2, breaker_pb2_grpc, spec_pb2, spec_pb2_grpc
from controlplane.cli._errors import CommandFailed, ExitCode, exit_code_for_status

DEFAULT_SERVER = "127.0.0.1:50051"
SERVER_ENV_VAR = "FUSEBOX_SERVER"
DEFAULT_TIMEOUT_SECONDS = 10.0

_Response = TypeVar("_Response", bound=Message)


def server_address(flag_value: str | None) -> str:
    """``--server`` if given, else ``$FUSEBOX_SERVER``, else the default local address."""
    return flag_value or os.environ.get(SERVER_ENV_VAR) or DEFAULT_SERVER


class _ServiceClient:
    """One channel to the server; use as a context manager so it is closed."""

    def __init__(
        self,
        address: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=list(options))

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
            return CommandFailed(_unreachable_message(self.address, code, self.timeout), exit_code)
        if code is grpc.StatusCode.INVALID_ARGUMENT:
            violations = _violation_lines(err)
            if violations:
                return CommandFailed(
                    f"rejected: {len(violations)} problem(s) found, nothing was stored",
                    exit_code,
                    violations,
                )
        return CommandFailed(self._rejection_message(code, details), exit_code)

    def _rejection_message(self, code: grpc.StatusCode, details: str) -> str:
        return _rejection_message(code, details)


class SpecServiceClient(_ServiceClient):
    """A client of ``fusebox.v1.SpecService``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        super().__init__(address, timeout)
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


class BreakerServiceClient(_ServiceClient):
    """A client of ``fusebox.v1.BreakerService``."""

    def __init__(self, address: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        super().__init__(address, timeout, options=_FAST_RECONNECT_OPTIONS)
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
    from controlplane.wire_errors import format_violation, violations_from_rpc_error

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


def _unreachable_message(address: str, code: grpc.StatusCode, timeout: float) -> str:
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        why = f"no answer within {timeout:g}s"
    else:
        why = "connection failed"
    return (
        f"cannot reach the Fusebox server at {address} ({why}). "
        f"Start one with `fusebox serve --listen {address}`, or point --server / "
        f"{SERVER_ENV_VAR} at a running server."
    )
