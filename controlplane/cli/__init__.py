"""The ``fusebox`` command line (console script ``fusebox = fusebox.controlplane.cli:main``).

Example::

    fusebox serve --data-dir ./data &
    fusebox apply -f resiliency.yaml
    fusebox resolve --app-id checkout

Exit codes: 0 ok, 1 rejected input, 2 usage, 3 server unreachable, 141 the
reader of standard output went away (``fusebox breakers list | head -1``).
"""

from __future__ import annotations

import os
import sys

from fusebox.agent.extras import DISTRIBUTION
from fusebox.controlplane.cli._errors import CommandFailed, ExitCode

__all__ = ["ExitCode", "main"]

#: Top-level modules of the ``server`` extra: without one, the command says which
#: extra to install instead of printing a traceback.
SERVER_EXTRA_MODULES = frozenset(
    {"yaml", "redis", "prometheus_client", "grpc_health", "grpc_reflection", "grpc_status"}
)


def main(argv: list[str] | None = None) -> int:
    """Run one ``fusebox`` command and return its exit code (never raises SystemExit).

    A reader of standard output that goes away (``| head -1``) stops the
    command quietly with ``ExitCode.OUTPUT_CLOSED`` (141), as ``cat`` or
    ``grep`` stopped by SIGPIPE: Python ignores SIGPIPE, so every command's
    next write (or the final flush) raises ``BrokenPipeError``, handled here once.
    """
    try:
        code = _run(argv)
        sys.stdout.flush()  # inside the try: a reader gone before the last flush is the same case
        return code
    except BrokenPipeError:
        _discard_stdout()
        return int(ExitCode.OUTPUT_CLOSED)
    except KeyboardInterrupt:  # during the last flush
        return 130
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] not in SERVER_EXTRA_MODULES:
            raise
        print(f"error: the fusebox command needs {missing.name}, which is optional: "
              f"pip install '{DISTRIBUTION}[server]'", file=sys.stderr)
        return int(ExitCode.USAGE)


def _run(argv: list[str] | None) -> int:
    # Imported here: the commands need the server extra, and main() says so.
    from fusebox.controlplane.cli._parser import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: usage errors (2) and --help (0)
        return exit_.code if isinstance(exit_.code, int) else ExitCode.USAGE
    try:
        return int(args.handler(args))
    except CommandFailed as failure:
        for line in failure.details:
            print(line, file=sys.stderr)
        print(f"error: {failure.message}", file=sys.stderr)
        return int(failure.exit_code)
    except KeyboardInterrupt:
        return 130


def _discard_stdout() -> None:
    """Point standard output at the null device: what is still buffered would
    otherwise fail again when the interpreter flushes it at exit."""
    try:
        fileno = sys.stdout.fileno()
    except (OSError, ValueError):  # replaced by an object without a descriptor (tests)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fileno)
    finally:
        os.close(devnull)
