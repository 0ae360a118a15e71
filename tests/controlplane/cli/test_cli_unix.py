"""The CLI as a Unix tool, in process: which ``--server`` values are accepted and
what the others are told, and the exit code of a command whose reader went
away. ``test_cli_unix_e2e.py`` runs the same cases as real processes."""

from __future__ import annotations

import io

import pytest

from fusebox.controlplane.cli import ExitCode, main
from fusebox.controlplane.cli._address import parse_server_address
from fusebox.controlplane.cli._connection import server_address
from tests.support.redis_server import free_port


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:50051", "127.0.0.1", 50051),
        ("fusebox.internal:6000", "fusebox.internal", 6000),
        ("[::1]:50051", "::1", 50051),
        ("dns:///fusebox.internal:50051", "fusebox.internal", 50051),
        ("dns://10.0.0.2:53/fusebox.internal:50051", "fusebox.internal", 50051),
        ("dns:fusebox.internal:50051", "fusebox.internal", 50051),
        ("ipv4:10.0.0.7:50051,10.0.0.8:50051", None, None),  # several replicas, as agents take
        ("ipv6:[::1]:50051,[fe80::1]:50051", None, None),
        ("unix:/run/fusebox.sock", None, None),
        ("unix:///run/fusebox.sock", None, None),
        ("unix-abstract:fusebox", None, None),
    ],
)
def test_every_grpc_target_form_agents_take_is_accepted(
    address: str, host: str | None, port: int | None
) -> None:
    parsed = parse_server_address(address)
    assert (parsed.target, parsed.host, parsed.port) == (address, host, port)
    assert server_address(address) == address


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("http://127.0.0.1:50051", "a URL scheme (http://) is not accepted; write HOST:PORT, "
                                   "e.g. 127.0.0.1:50051"),
        ("https://fusebox.internal", "e.g. fusebox.internal:50051 (TLS is --tls-ca, not a scheme)"),
        ("grpc://localhost:50051", "a URL scheme (grpc://) is not accepted"),
        ("localhost", "no port; write HOST:PORT, e.g. localhost:50051"),
        ("[::1]", "no port; write HOST:PORT, e.g. [::1]:50051"),
        ("localhost:http", "port 'http' is not a number from 1 to 65535"),
        ("localhost:70000", "port '70000' is not a number from 1 to 65535"),
        (":50051", "no host before :50051"),
        ("::1:50051", "an IPv6 address goes in brackets, [ADDR]:PORT"),
        ("ipv4:10.0.0.7", "no port; write HOST:PORT, e.g. 10.0.0.7:50051"),
        ("ipv4:fusebox.internal:50051", "'fusebox.internal' is not an IPv4 address"),
        ("ipv4:10.0.0.7:50051,", "an empty address in the list"),
        ("unix://run/fusebox.sock", "unix:// needs an absolute path"),
    ],
)
def test_a_malformed_server_exits_2_before_any_request_saying_what_to_write(
    address: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--server", address, "breakers", "list"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: --server {address!r}: ")
    assert says in err
    assert "accepted: HOST:PORT, [IPV6]:PORT, dns:" in err
    assert "cannot reach" not in err


def test_a_malformed_fusebox_server_variable_is_named_as_the_culprit(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FUSEBOX_SERVER", "grpc://fusebox.internal:50051")
    assert main(["get", "specs"]) == ExitCode.USAGE
    assert "error: $FUSEBOX_SERVER 'grpc://fusebox.internal:50051': a URL scheme" in (
        capsys.readouterr().err
    )


def test_fusebox_run_checks_its_server_like_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--server", "http://fusebox.internal:50051", "run", "--app-id", "checkout",
            "--", "true"]
    assert main(argv) == ExitCode.USAGE
    assert "error: --server 'http://fusebox.internal:50051': a URL scheme" in (
        capsys.readouterr().err
    )


def test_a_host_that_does_not_resolve_exits_3_saying_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = "no-such-host.invalid:50051"  # .invalid never resolves (RFC 2606)
    assert main(["--server", address, "--timeout", "5", "breakers", "list"]) == (
        ExitCode.UNREACHABLE
    )
    err = capsys.readouterr().err
    assert f"cannot reach the Fusebox server at {address}: the host 'no-such-host.invalid' " \
           "does not resolve" in err
    assert "fusebox serve" not in err  # starting a server would not help


def test_an_address_list_nobody_answers_at_is_unreachable_without_a_serve_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    address = f"ipv4:127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    assert main(["--server", address, "--timeout", "5", "breakers", "list"]) == (
        ExitCode.UNREACHABLE
    )
    err = capsys.readouterr().err
    assert f"cannot reach the Fusebox server at {address}" in err
    assert "Check that a server listens there" in err


class ClosedPipe(io.StringIO):
    """Standard output whose reader has gone: every flush fails as a pipe would."""

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:
        raise io.UnsupportedOperation("no descriptor in a test")


def test_a_reader_gone_before_the_last_flush_exits_141_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["token", "create", "ci", "--role", "viewer"]) == ExitCode.OUTPUT_CLOSED == 141
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" not in err
