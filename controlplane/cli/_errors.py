"""Exit codes and the one exception every command raises to stop with one.

Exit codes follow kubectl/dapr habits and are part of the CLI's contract:

- 0 ``OK``: done.
- 1 ``REJECTED``: the input or the request was refused (invalid spec,
  revision conflict, unknown spec, unreadable file).
- 2 ``USAGE``: bad command line (argparse's own code).
- 3 ``UNREACHABLE``: no server answered at the address given (or its host
  does not resolve).
- 141 ``OUTPUT_CLOSED``: the reader of standard output went away (``| head``);
  128 + SIGPIPE, what the shell reports for ``cat`` or ``grep`` stopped by it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import grpc


class ExitCode(enum.IntEnum):
    OK = 0
    REJECTED = 1
    USAGE = 2
    UNREACHABLE = 3
    OUTPUT_CLOSED = 141


class CommandFailed(Exception):
    """Stops a command: ``details`` are printed first (one per line), then ``error: message``.

    ``status`` is the gRPC status of the failed request it stands for, if any
    (a handler may add to the message of a ``NOT_FOUND``, for example).
    """

    def __init__(
        self,
        message: str,
        exit_code: ExitCode = ExitCode.REJECTED,
        details: Sequence[str] = (),
        status: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = tuple(details)
        self.status = status


# Codes that mean "the server is not there (or not answering)", as opposed to
# "the server answered and said no".
_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def exit_code_for_status(code: grpc.StatusCode) -> ExitCode:
    """The CLI exit code for a failed RPC's status code."""
    if code is grpc.StatusCode.OK:
        return ExitCode.OK
    if code in _UNREACHABLE_CODES:
        return ExitCode.UNREACHABLE
    return ExitCode.REJECTED
