"""`fusebox validate` and offline `fusebox resolve -f`: files in, verdicts out, no server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fusebox.controlplane.cli import ExitCode, main
from tests.support.specs import SEED_SPEC

BAD_DURATION_SPEC = SEED_SPEC.replace("maxInterval: 5s", "maxInterval: 5 parsecs")
BAD_FIELD_SPEC = SEED_SPEC.replace("maxRequests: 1", "maxRequest: 1")
MISSING_POLICY_SPEC = SEED_SPEC.replace("circuitBreaker: simpleCB", "circuitBreaker: noSuchCB")
COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
"""


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_seed_spec_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path / "resiliency.yaml", SEED_SPEC)
    assert main(["validate", "-f", spec]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines() == ["resiliency.dapr.io/myresiliency valid"]


def test_invalid_spec_exits_1_with_file_line_and_field_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path / "bad.yaml", BAD_DURATION_SPEC)
    assert main(["validate", "-f", spec]) == ExitCode.REJECTED
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    line_of_value = BAD_DURATION_SPEC.splitlines().index("        maxInterval: 5 parsecs") + 1
    assert out[0].startswith(f"{spec}:{line_of_value}:")
    assert "spec.policies.retries.retryForever.maxInterval" in out[0]


def test_every_problem_of_every_file_is_reported_in_one_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write(tmp_path / "a.yaml", BAD_DURATION_SPEC)
    second = write(tmp_path / "b.yaml", BAD_FIELD_SPEC)
    valid = write(tmp_path / "c.yaml", SEED_SPEC.replace("myresiliency", "other"))
    assert main(["validate", "-f", second, "-f", valid, "-f", first]) == ExitCode.REJECTED
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert [line.split(":")[0] for line in out] == [second, first]  # in the order given
    assert "spec.policies.circuitBreakers.simpleCB.maxRequest" in out[0]
    assert "did you mean 'maxRequests'" in out[0]
    assert "2 error(s), 0 warning(s) found" in captured.err


def test_a_policy_no_file_defines_is_a_warning_offline_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Another Resiliency document, already stored, may define it: validate
    # cannot know, so it says what it could not check.
    spec = write(tmp_path / "b.yaml", MISSING_POLICY_SPEC)
    assert main(["validate", "-f", spec]) == ExitCode.OK
    captured = capsys.readouterr()
    warning, valid = captured.out.splitlines()
    line = MISSING_POLICY_SPEC.splitlines().index("        circuitBreaker: noSuchCB") + 1
    assert warning == (
        f"{spec}:{line}:25: spec.targets.apps.order-processor.circuitBreaker: warning: "
        "circuitBreaker policy 'noSuchCB' is not defined in the files given; it must be defined "
        "in another Resiliency document of namespace 'default', or apply will refuse it"
    )
    assert valid == "resiliency.dapr.io/myresiliency valid"
    assert "1 warning(s)" in captured.err


def test_errors_and_warnings_are_printed_together_in_line_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = BAD_DURATION_SPEC.replace("  - checkout\n", "  - checkout\n  - checkout\n")
    spec = write(tmp_path / "both.yaml", both)
    assert main(["validate", "-f", spec]) == ExitCode.REJECTED
    captured = capsys.readouterr()
    warning, error = captured.out.splitlines()
    assert warning.startswith(f"{spec}:7:5: scopes[1]: warning: app-id 'checkout' is listed twice")
    assert error.startswith(f"{spec}:14:22: spec.policies.retries.retryForever.maxInterval: ")
    assert "1 error(s), 1 warning(s) found" in captured.err


def test_directory_skips_component_files_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "resiliency.yaml", SEED_SPEC)
    write(tmp_path / "statestore.yaml", COMPONENT)
    assert main(["validate", "-f", str(tmp_path)]) == ExitCode.OK
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["resiliency.dapr.io/myresiliency valid"]
    assert "skipping" in captured.err
    assert "statestore.yaml" in captured.err


def test_stdin_errors_are_located_in_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(BAD_DURATION_SPEC))
    assert main(["validate", "-f", "-"]) == ExitCode.REJECTED
    assert capsys.readouterr().out.startswith("<stdin>:")


def test_offline_resolve_gives_checkout_the_order_processor_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path / "resiliency.yaml", SEED_SPEC)
    assert main(["resolve", "--app-id", "checkout", "-f", spec]) == ExitCode.OK
    rows = [line.split("   ") for line in capsys.readouterr().out.splitlines()]
    header, order_processor = rows[0], rows[1]
    assert header[:2] == ["KIND", "TARGET"]
    row = " ".join(order_processor)
    assert order_processor[0] == "app"
    assert "order-processor" in row
    assert "retryForever (constant" in row
    assert "unlimited" in row
    assert "simpleCB (consecutiveFailures >= 5" in row
    assert "default/myresiliency" in row


def test_offline_resolve_gives_nothing_to_an_app_outside_the_scopes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path / "resiliency.yaml", SEED_SPEC)
    argv = ["resolve", "--app-id", "order-processor", "-f", spec]
    assert main(argv) == ExitCode.OK
    assert 'no policies apply to app "order-processor"' in capsys.readouterr().out
    assert main([*argv, "-o", "json"]) == ExitCode.OK
    resolved = json.loads(capsys.readouterr().out)
    assert resolved.get("targets", []) == []
    assert resolved["appId"] == "order-processor"


def test_offline_resolve_of_an_invalid_file_exits_1_with_the_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path / "bad.yaml", BAD_DURATION_SPEC)
    assert main(["resolve", "--app-id", "checkout", "-f", spec]) == ExitCode.REJECTED
    err = capsys.readouterr().err
    assert "spec.policies.retries.retryForever.maxInterval" in err
