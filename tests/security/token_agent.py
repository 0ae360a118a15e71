"""A service process whose agent authenticates with a bearer token, for log tests.

    python -W error::RuntimeWarning -m tests.security.token_agent MODE SERVER TOKEN CACHE

``MODE`` is ``sync`` (``Agent``) or ``async`` (``AsyncAgent``). Every log record
(``fusebox`` loggers from DEBUG, every other logger from INFO, Python warnings
through ``logging.captureWarnings``) goes to stderr as one line,
``LOG <LEVEL> <logger>: <message>``; anything else there (a traceback, an
``Exception ignored in`` report, an asyncio message printed without logging)
is stray output for the test to find. Prints ``ready`` on stdout once the agent
started; closes it when stdin closes, collects garbage (where asyncio reports
tasks destroyed while pending) and prints ``closed``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys

from fusebox.agent import Agent, AsyncAgent


def say(word: str) -> None:
    sys.stdout.write(word + "\n")
    sys.stdout.flush()


def main() -> int:
    mode, server, token, cache = sys.argv[1:5]
    handler = logging.StreamHandler(sys.stderr)
    # A record's traceback, if any, follows on lines of its own: stray output too.
    handler.setFormatter(logging.Formatter("LOG %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("fusebox").setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    kwargs = {"app_id": "checkout", "server": server, "token": token, "cache_path": cache,
              "initial_fetch_timeout": 2.0}
    if mode == "sync":
        with Agent(**kwargs):  # type: ignore[arg-type]
            say("ready")
            sys.stdin.read()
    else:
        async def run() -> None:
            async with AsyncAgent(**kwargs):  # type: ignore[arg-type]
                say("ready")
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

        asyncio.run(run())
    gc.collect()
    say("closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
