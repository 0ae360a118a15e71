"""The fusebox command line: arguments, inputs and exit codes (no server involved)."""

from __future__ import annotations

import socket
from pathlib import Path

import grpc
import pytest

from fusebox.controlplane.cli import ExitCode, main
from fusebox.controlplane.cli._connection import DEFAULT_SERVER, server_address
from fusebox.controlplane.cli._errors import CommandFailed, exit_code_for_status
from fusebox.controlplane.cli._parser import build_parser
from fusebox.controlplane.cli._sources import STDIN_NAME, read_sources

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: {name}
spec:
  policies: {{}}
  targets: {{}}
"""
COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
"""


def unused_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# ---- usage -------------------------------------------------------------------


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "apply" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["apply"],  # -f is required
        ["get"],  # the resource type is required
        ["get", "pods"],
        ["get", "specs", "-o", "xml"],
        ["rollback", "myresiliency"],  # --to is required
        ["rollback", "myresiliency", "--to", "two"],
        ["resolve"],  # --app-id is required
        ["history", "x", "--timeout", "-1"],
        ["delete", "spec", "x", "--expected-revision", "-3"],
    ],
)
def test_bad_command_lines_exit_2_with_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == ExitCode.USAGE
    assert "usage: fusebox" in capsys.readouterr().err


def test_server_flag_is_accepted_before_and_after_the_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--server", "a:1", "get", "specs"]).server == "a:1"
    assert parser.parse_args(["get", "specs", "--server", "b:2"]).server == "b:2"
    assert parser.parse_args(["get", "specs"]).server is None
    assert parser.parse_args(["--timeout", "2.5", "history", "x"]).timeout == 2.5
    assert parser.parse_args(["history", "x", "--timeout", "4"]).timeout == 4.0


def test_server_address_prefers_flag_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FUSEBOX_SERVER", raising=False)
    assert server_address(None) == DEFAULT_SERVER == "127.0.0.1:50051"
    monkeypatch.setenv("FUSEBOX_SERVER", "10.0.0.7:6000")
    assert server_address(None) == "10.0.0.7:6000"
    assert server_address("127.0.0.1:1234") == "127.0.0.1:1234"


def test_command_defaults_follow_kubectl_habits() -> None:
    parser = build_parser()
    get = parser.parse_args(["get", "specs"])
    assert (get.namespace, get.output, get.all_namespaces, get.name) == (
        "default",
        "table",
        False,
        None,
    )
    apply = parser.parse_args(["apply", "-f", "a.yaml", "-f", "dir", "--dry-run"])
    assert apply.filenames == ["a.yaml", "dir"]
    assert apply.dry_run is True
    assert apply.expected_revision is None
    assert (
        parser.parse_args(["apply", "-f", "a", "--expected-revision", "0"]).expected_revision == 0
    )
    rollback = parser.parse_args(["rollback", "cb", "--to", "3", "-n", "prod"])
    assert (rollback.name, rollback.to, rollback.namespace) == ("cb", 3, "prod")
    resolve = parser.parse_args(["resolve", "--app-id", "checkout", "-o", "json"])
    assert (resolve.app_id, resolve.output, resolve.filenames) == ("checkout", "json", [])


def test_serve_flags_default_to_the_embedded_store_on_loopback() -> None:
    args = build_parser().parse_args(["serve"])
    assert args.listen == "127.0.0.1:50051"
    assert args.store is None
    assert args.data_dir is None
    assert (args.log_format, args.log_level) == ("text", "info")


# ---- exit codes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.OK, ExitCode.OK),
        (grpc.StatusCode.INVALID_ARGUMENT, ExitCode.REJECTED),
        (grpc.StatusCode.ABORTED, ExitCode.REJECTED),
        (grpc.StatusCode.FAILED_PRECONDITION, ExitCode.REJECTED),
        (grpc.StatusCode.NOT_FOUND, ExitCode.REJECTED),
        (grpc.StatusCode.INTERNAL, ExitCode.REJECTED),
        (grpc.StatusCode.UNAVAILABLE, ExitCode.UNREACHABLE),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ExitCode.UNREACHABLE),
    ],
)
def test_rpc_status_codes_map_to_documented_exit_codes(
    code: grpc.StatusCode, expected: ExitCode
) -> None:
    assert exit_code_for_status(code) is expected


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "specs"],
        ["history", "myresiliency"],
        ["delete", "spec", "myresiliency"],
        ["rollback", "myresiliency", "--to", "1"],
        ["resolve", "--app-id", "checkout"],
    ],
)
def test_unreachable_server_exits_3_naming_the_address_and_how_to_start_one(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    address = f"127.0.0.1:{unused_loopback_port()}"
    assert main(["--server", address, *argv]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err
    assert f"cannot reach the Fusebox server at {address}" in err
    assert "fusebox serve" in err


def test_apply_to_unreachable_server_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "r.yaml"
    spec.write_text(RESILIENCY.format(name="r"))
    monkeypatch.setenv("FUSEBOX_SERVER", f"127.0.0.1:{unused_loopback_port()}")
    assert main(["apply", "-f", str(spec)]) == ExitCode.UNREACHABLE
    assert "fusebox serve" in capsys.readouterr().err


def test_apply_of_a_missing_file_exits_1_before_contacting_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["--server", "127.0.0.1:1", "apply", "-f", str(missing)]) == ExitCode.REJECTED
    assert f"{missing}: no such file or directory" in capsys.readouterr().err


def test_expected_revision_with_several_files_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(RESILIENCY.format(name=name))
    argv = ["apply", "-f", str(tmp_path), "--expected-revision", "1"]
    assert main(argv) == ExitCode.USAGE
    assert "--expected-revision needs exactly one file, got 2" in capsys.readouterr().err


def test_get_with_a_name_and_all_namespaces_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["get", "specs", "myresiliency", "-A"]) == ExitCode.USAGE
    assert "cannot be combined with -A" in capsys.readouterr().err


# ---- inputs ------------------------------------------------------------------------


def test_directory_gives_its_resiliency_files_sorted_and_skips_other_kinds(
    tmp_path: Path,
) -> None:
    (tmp_path / "b.yml").write_text(RESILIENCY.format(name="b"))
    (tmp_path / "a.yaml").write_text(RESILIENCY.format(name="a"))
    (tmp_path / "statestore.yaml").write_text(COMPONENT)
    (tmp_path / "README.md").write_text("not yaml")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "c.yaml").write_text(RESILIENCY.format(name="c"))
    notes: list[str] = []

    sources = read_sources([str(tmp_path)], notes.append)

    assert [Path(s.name).name for s in sources] == ["a.yaml", "b.yml"]
    assert "name: a" in sources[0].text
    assert notes == [
        f"skipping {tmp_path / 'statestore.yaml'}: not a Resiliency document (Component)"
    ]


def test_explicit_files_are_sent_as_they_are_whatever_their_kind(tmp_path: Path) -> None:
    component = tmp_path / "statestore.yaml"
    component.write_text(COMPONENT)
    notes: list[str] = []
    sources = read_sources([str(component)], notes.append)
    assert [(s.name, s.text) for s in sources] == [(str(component), COMPONENT)]
    assert notes == []


def test_unparseable_yaml_in_a_directory_is_kept_for_the_parser_to_report(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: Resiliency\nmetadata: [unclosed\n")
    sources = read_sources([str(tmp_path)], lambda _: None)
    assert [Path(s.name).name for s in sources] == ["broken.yaml"]


def test_directory_without_resiliency_documents_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "statestore.yaml").write_text(COMPONENT)
    with pytest.raises(CommandFailed) as failure:
        read_sources([str(tmp_path)], lambda _: None)
    assert failure.value.exit_code is ExitCode.REJECTED
    assert "no Resiliency documents" in failure.value.message


def test_dash_reads_stdin_under_the_name_stdin(tmp_path: Path) -> None:
    file = tmp_path / "x.yaml"
    file.write_text(RESILIENCY.format(name="x"))
    sources = read_sources(["-", str(file)], lambda _: None, read_stdin=lambda: "from stdin")
    assert [(s.name, s.text) for s in sources] == [
        (STDIN_NAME, "from stdin"),
        (str(file), RESILIENCY.format(name="x")),
    ]
