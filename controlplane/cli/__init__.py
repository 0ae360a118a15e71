"""The ``fusebox`` command line (console script ``fusebox = controlplane.cli:main``).

Example::

    fusebox serve --data-dir ./data &
    fusebox apply -f resiliency.yaml
    fusebox resolve --app-id checkout

Exit codes: 0 ok, 1 rejected input, 2 usage, 3 server unreachable.
"""

from __future__ import annotations

import sys

from controlplane.cli._errors import CommandFailed, ExitCode
from controlplane.cli._parser import build_parser

__all__ = ["ExitCode", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run one ``fusebox`` command and return its exit code (never raises SystemExit)."""
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
