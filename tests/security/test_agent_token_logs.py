"""Agents with a bearer token log cleanly: refused, server restarted, shut down.

Each agent runs in a process of its own (``tests/security/token_agent.py``,
with ``-W error::RuntimeWarning``) against a real ``fusebox serve
--tokens-file``. Its stderr must hold nothing but its own log lines: no
traceback, nothing from asyncio ("Task was destroyed but it is pending",
"aclose(): asynchronous generator is already running") or the warnings
module, no "Event loop is closed" printed by a grpc thread; and at INFO and
above, exactly one line per event.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.security.conftest import token_of, tokens_yaml
from tests.support.eventually import eventually
from tests.support.processes import ServerProcess, child_env
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e  # starts processes

DEADLINE = 30.0
MODES = ("sync", "async")


@dataclass(frozen=True)
class LogLine:
    level: str
    logger: str
    message: str


class TokenAgent:
    """``python -m tests.security.token_agent``: started at once, ``ready`` awaited."""

    def __init__(self, workdir: Path, mode: str, server: str, token: str) -> None:
        self._out, self._err = workdir / f"agent-{mode}.out", workdir / f"agent-{mode}.err"
        with self._out.open("wb") as out, self._err.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-W", "error::RuntimeWarning", "-m", "tests.security.token_agent",
                 mode, server, token, str(workdir / f"cache-{mode}.pb")],
                stdin=subprocess.PIPE, stdout=out, stderr=err, cwd=REPOSITORY, env=child_env(),
            )
        eventually(lambda: "ready" in self.stdout() or self.process.poll() is not None,
                   deadline=DEADLINE, what="the agent starting", details=self.stderr)
        assert self.process.poll() is None, self.stderr()

    def stdout(self) -> str:
        return self._out.read_text()

    def stderr(self) -> str:
        return self._err.read_text()

    def lines(self) -> list[LogLine]:
        found = []
        for line in self.stderr().splitlines():
            if match := re.fullmatch(r"LOG (\w+) (\S+): (.*)", line):
                found.append(LogLine(*match.groups()))
        return found

    def stray(self) -> list[str]:
        """What stderr holds besides log lines: tracebacks, "Exception ignored in", …"""
        return [line for line in self.stderr().splitlines()
                if line.strip() and not line.startswith("LOG ")]

    def said(self, logger: str) -> list[str]:
        """``LEVEL message`` of each line at INFO or above from ``logger``."""
        return [f"{line.level} {line.message}" for line in self.lines()
                if line.logger == logger and line.level != "DEBUG"]

    def wait_for(self, text: str, what: str, *, count: int = 1) -> None:
        eventually(lambda: sum(text in line.message for line in self.lines()) >= count,
                   deadline=DEADLINE, what=what, details=self.stderr)

    def close(self) -> None:
        """Close the agent (stdin ends) and wait for the process to exit."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            code = self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the agent did not close:\n{self.stderr()}") from None
        assert code == 0, self.stderr()
        assert self.stdout().splitlines() == ["ready", "closed"]

    def assert_clean(self) -> None:
        """Nothing but fusebox's own log lines; no asyncio, warnings or grpc noise."""
        assert self.stray() == [], self.stderr()
        assert [line for line in self.lines() if not line.logger.startswith("fusebox.")] == []


def tokens_file(workdir: Path, names: list[str]) -> Path:
    path = workdir / "tokens.yaml"
    path.write_text(tokens_yaml(names))
    return path


@pytest.mark.parametrize("mode", MODES)
def test_a_refused_agent_says_so_once_and_nothing_else(tmp_path: Path, mode: str) -> None:
    tokens = tokens_file(tmp_path, ["alice-admin"])  # knows no agent token
    with ServerProcess(tmp_path, extra_args=("--tokens-file", str(tokens))) as server:
        agent = TokenAgent(tmp_path, mode, server.address, token_of("checkout-agents"))
        # Several refused streams, each dropped and retried (the interceptor that
        # used to carry the token left one pending task per stream behind).
        agent.wait_for("unreachable: StatusCode.UNAUTHENTICATED", count=3,
                       what="three more refused attempts")
        agent.close()
    agent.assert_clean()
    [refused, fallback] = agent.said("fusebox.agent.link")
    assert refused.startswith(f"ERROR control plane {server.address} refused this agent "
                              "(UNAUTHENTICATED: invalid token")
    assert refused.endswith("check its token")
    assert fallback == (f"WARNING control plane {server.address} refused this agent "
                        "(UNAUTHENTICATED); no usable cached policies (none); calls pass "
                        "through unguarded until the control plane answers")
    assert agent.said("fusebox.agent.cluster") == []  # never connected: no mode change


@pytest.mark.parametrize("mode", MODES)
def test_a_restarted_server_is_unreachable_then_reachable_again_and_closing_is_quiet(
    tmp_path: Path, mode: str,
) -> None:
    tokens = tokens_file(tmp_path, ["checkout-agents"])
    server = ServerProcess(tmp_path, extra_args=("--tokens-file", str(tokens)))
    server.start()
    try:
        agent = TokenAgent(tmp_path, mode, server.address, token_of("checkout-agents"))
        agent.wait_for("applied", what="the first policies")
        server.stop()
        agent.wait_for("unreachable (UNAVAILABLE)", what="the outage being noticed")
        server = ServerProcess(tmp_path, port=server.port,
                               extra_args=("--tokens-file", str(tokens)))
        server.start()
        agent.wait_for("reachable again", what="the agent reconnecting")
        agent.close()
    finally:
        server.stop()
    agent.assert_clean()
    [applied, *rest] = agent.said("fusebox.agent.link")
    assert re.fullmatch(rf"INFO policies from control plane {server.address} applied "
                        r"\(digest \w+, 0 targets\)", applied)
    assert rest == [
        f"WARNING control plane {server.address} unreachable (UNAVAILABLE); "
        "keeping the current policies",
        f"INFO control plane {server.address} reachable again",
    ]
    # The breakers' mode follows the stream, one line per change (docs/agent.md);
    # closing the agent is no news (DEBUG).
    assert agent.said("fusebox.agent.cluster") == [
        "INFO circuit breakers follow the fleet's state beside their own "
        "(connected to the control plane)",
        "WARNING circuit breakers run per instance only (disconnected from the control plane)",
        "INFO circuit breakers follow the fleet's state beside their own "
        "(connected to the control plane)",
    ]
