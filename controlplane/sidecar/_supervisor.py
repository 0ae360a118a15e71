"""Run the app as a child process, the way `dapr run` does.

Its stdout and stderr lines are printed with ``== APP == `` in front; SIGINT
and SIGTERM sent to `fusebox run` are passed on to it; its exit code is ours
(a child killed by signal N gives 128 + N, as a shell reports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

APP_PREFIX = "== APP == "
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def _pump(stream: asyncio.StreamReader, out: TextIO) -> None:
    while line := await stream.readline():
        out.write(APP_PREFIX + line.decode(errors="replace").rstrip("\r\n") + "\n")
        out.flush()


def exit_code_of(returncode: int) -> int:
    """A process's exit status as a shell would report it."""
    return 128 - returncode if returncode < 0 else returncode


async def run_app(command: Sequence[str], env: Mapping[str, str],
                  out: TextIO = sys.stdout) -> int:
    """Run ``command`` until it exits; returns its exit code (127: it could not start)."""
    try:
        process = await asyncio.create_subprocess_exec(
            *command, env=dict(env), stdin=None, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # Its own session: a terminal's Ctrl-C reaches it once, through us.
            start_new_session=True,
        )
    except OSError as e:
        print(f"cannot start the app {command[0]!r}: {e}", file=sys.stderr)
        return 127
    loop = asyncio.get_running_loop()
    for sig in FORWARDED_SIGNALS:
        loop.add_signal_handler(sig, _forward, process, sig)
    try:
        assert process.stdout is not None
        await _pump(process.stdout, out)
        return exit_code_of(await process.wait())
    finally:
        for sig in FORWARDED_SIGNALS:
            loop.remove_signal_handler(sig)
        if process.returncode is None:  # we were cancelled: do not leave the app behind
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _forward(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
