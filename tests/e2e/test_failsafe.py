"""The failsafe-go walk-through (examples/failsafe/run.py) end to end, seeded.

One run of every step against one control plane; serviceB's answers follow
a fixed seed, so each step shows the behaviour the post shows. The runner's
JSON summary is what is asserted; timing-dependent details (exactly when a
breaker half-opens) are asserted as invariants, not as exact sequences.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import child_env
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

FALLBACK_BODY = '"messageB": "error accessing service B"'
RUN_DEADLINE = 180.0


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    summary = tmp_path_factory.mktemp("failsafe") / "summary.json"
    done = subprocess.run(
        [sys.executable, "examples/failsafe/run.py", "--step", "all", "--seed", "7",
         "--summary-json", str(summary)],
        cwd=REPOSITORY, env=child_env(), capture_output=True, text=True, timeout=RUN_DEADLINE,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Connection timed out" in done.stdout
    assert "Fallback executed result" in done.stdout
    assert "circuit breaker state changed from closed to open" in done.stdout
    assert "(serviceB sent Retry-After: 2)" in done.stdout
    result = json.loads(Path(summary).read_text())
    result["stdout"] = done.stdout
    yield result


def step_lines(stdout: str) -> list[str]:
    return [line.removeprefix("== step == ") for line in stdout.splitlines()
            if line.startswith("== step == ")]


def test_each_step_says_what_it_demonstrates_and_what_to_look_for(
        steps: dict[str, Any]) -> None:
    lines = step_lines(steps["stdout"])
    names = ["timeout", "retry", "breaker", "fallback", "composition"]
    headlines = [line for line in lines if not line.startswith("look for: ")]
    assert [h.split(":")[0] for h in headlines] == [
        f"[{i}/5] {name}" for i, name in enumerate(names, 1)]
    # Each headline is followed at once by what to look for.
    for headline in headlines:
        assert lines[lines.index(headline) + 1].startswith("look for: ")


def statuses(step: dict[str, Any]) -> list[int]:
    return [r["status"] for r in step["responses"]]


def fallback_answers(step: dict[str, Any]) -> int:
    return sum(1 for r in step["responses"] if FALLBACK_BODY in r["body"])


def assert_consistent_breaker(transitions: list[str]) -> None:
    """A chain starting closed, each transition leaving the state the previous one entered."""
    state = "closed"
    for transition in transitions:
        source, target = transition.split(">")
        assert source == state, transitions
        state = target


def test_timeout_step_cuts_every_slow_call_at_one_second(steps: dict[str, Any]) -> None:
    step = steps["timeout"]
    assert statuses(step) == [500, 500]
    assert step["timeouts"] == 2
    assert step["retry_delays"] == [] and step["transitions"] == []


def test_retry_step_retries_each_503_after_retry_after(steps: dict[str, Any]) -> None:
    step = steps["retry"]
    b_503 = step["service_b_statuses"].count(503)
    assert b_503 >= 2  # seed 7 makes serviceB fail, and fail twice in a row
    # Every 503 is either retried or, after maxRetries, answered as a 500.
    assert b_503 == len(step["retry_delays"]) + statuses(step).count(500)
    # Backoff alone would wait 1s, 2s, 4s; each wait is the Retry-After that
    # serviceB sent instead (2, then 1, in turn), in the order it sent them.
    assert step["retry_delays"] == step["retry_after"]
    assert set(step["retry_after"]) == {1.0, 2.0}
    assert is_subsequence([int(s) for s in step["retry_after"]], step["service_b_retry_after"])
    assert step["timeouts"] == 0 and step["transitions"] == []
    honoured = ", ".join(f"{s:g}s" for s in step["retry_after"])
    assert f"retry: Retry-After honoured, in order: {honoured} " in steps["stdout"]


def is_subsequence(items: list[int], sequence: list[int]) -> bool:
    remaining = iter(sequence)
    return all(any(item == candidate for candidate in remaining) for item in items)


def test_breaker_step_opens_half_opens_and_rejects(steps: dict[str, Any]) -> None:
    step = steps["breaker"]
    transitions = step["transitions"]
    assert transitions[:2] == ["closed>open", "open>half-open"]
    assert_consistent_breaker(transitions)
    for response in step["responses"]:
        # The post's own loop retries 3 times, one second apart, as long as the
        # breaker stays open for: the last try is rejected, or is a half-open probe
        # that serviceB fails ("retries exceeded" in the post), or succeeds.
        body = response["body"]
        assert (response["status"] == 200 or "circuit breaker is open" in body
                or body.endswith(": 503")), response


def test_fallback_step_answers_for_each_503(steps: dict[str, Any]) -> None:
    step = steps["fallback"]
    assert statuses(step) == [200] * len(step["responses"])
    assert step["fallbacks"] == step["service_b_statuses"].count(503) >= 1
    assert fallback_answers(step) == step["fallbacks"]


def test_composition_step_combines_all_four(steps: dict[str, Any]) -> None:
    step = steps["composition"]
    assert statuses(step) == [200] * len(step["responses"])  # the fallback answers failures
    assert step["fallbacks"] >= 1 and fallback_answers(step) == step["fallbacks"]
    assert step["transitions"][0] == "closed>open"
    assert_consistent_breaker(step["transitions"])
    assert step["timeouts"] + len(step["retry_delays"]) >= 1
