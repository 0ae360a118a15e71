"""The README's "Try it" and "Operate breakers", followed literally.

Every `$ ...` line of the console blocks between "## Try it" and "## Stores,
metrics, security" runs, in order, in a shell at the repository's root,
against a fresh control plane (`$FUSEBOX_SERVER`, as a reader would export it
for another address). Its output must match the lines the README shows under
it, once what changes from run to run is masked (ages and durations, times,
instance ids, client addresses, column padding); a line `...` stands for any
number of lines. So the files the README names exist, the agent snippet
creates the breaker the `breakers` commands show, and the pasted output is
what the commands print.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, child_env
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

README = REPOSITORY / "README.md"
COMMAND_DEADLINE = 60.0
# What differs between runs, in the order it is masked.
VOLATILE = [
    (re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z"), "<time>"),
    (re.compile(r"\S+@\S+ via ipv4:127\.0\.0\.1:\d+|ipv4:127\.0\.0\.1:\d+"), "<client>"),
    (re.compile(r"127\.0\.0\.1:\d+"), "<address>"),
    (re.compile(r"\b[\w.-]+-\d+-[0-9a-f]{6}\b"), "<instance>"),
    (re.compile(r"\b\d+(\.\d+)?(ns|us|µs|ms|s|m|h|d)\b"), "<duration>"),
    (re.compile(r"\s+"), " "),
]


def steps() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of each `$` line of the two sections."""
    text = README.read_text()
    section = text[text.index("\n## Try it\n"):text.index("\n## Stores, metrics, security\n")]
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                found[-1][1].append(line)
    return found


def masked(line: str) -> str:
    for pattern, replacement in VOLATILE:
        line = pattern.sub(replacement, line)
    return line.strip()


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, masked; an expected `...` line matches any number of lines."""
    if not expected:
        return not actual
    if expected[0].strip() == "...":
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and masked(expected[0]) == masked(actual[0]) and matches(
        expected[1:], actual[1:])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("readme")) as process:
        yield process


def test_the_readme_names_files_that_exist() -> None:
    commands = " ".join(command for command, _ in steps())
    named = re.findall(r"examples/[\w./-]+", commands)
    assert named, commands
    for path in named:
        assert (REPOSITORY / path).is_file(), path


def test_every_command_prints_what_the_readme_shows(server: ServerProcess,
                                                    tmp_path: Path) -> None:
    env = child_env(FUSEBOX_SERVER=server.address, PYTHONUNBUFFERED="1",
                    FUSEBOX_CACHE_DIR=str(tmp_path / "cache"))
    for command, expected in steps():
        done = subprocess.run(["bash", "-c", command], cwd=REPOSITORY, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=COMMAND_DEADLINE, check=False)
        # The one command shown failing is the one validating examples/try-it/bad.yaml.
        assert done.returncode == (1 if "bad.yaml" in command else 0), (command, done.stdout)
        actual = done.stdout.rstrip("\n").splitlines()
        assert matches(expected, actual), (
            f"$ {command}\n--- the README shows:\n" + "\n".join(expected)
            + "\n--- the command printed:\n" + "\n".join(actual))
