"""The tokens file, the role table, the safe-default checks and `fusebox token`."""

from __future__ import annotations

import io
import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusebox.controlplane.cli import ExitCode, main
from fusebox.controlplane.server import ServerConfig
from fusebox.controlplane.server.security.auth import AGENT_METHODS, READ_METHODS, role_allows
from fusebox.controlplane.server.security.tokens import (
    Role,
    TokenFileError,
    TokenRegistry,
    hash_token,
    parse_tokens,
)
from fusebox.v1 import agent_pb2, agent_pb2_grpc, policy_pb2
from tests.security.test_rpc_matrix import DEADLINE, Env, bearer, env  # noqa: F401

GOOD = f"tokens:\n  - name: ci\n    sha256: {hash_token('s3cret')}\n    role: admin\n"


def test_a_token_is_found_by_its_digest_and_nothing_else() -> None:
    tokens = parse_tokens(GOOD)
    entry = tokens.authenticate("s3cret")
    assert entry is not None and (entry.name, entry.role) == ("ci", Role.ADMIN)
    assert tokens.authenticate("s3cre") is None
    assert tokens.authenticate(hash_token("s3cret")) is None  # the digest is not the token


def test_json_is_accepted_too() -> None:
    digest = hash_token("t")
    text = ('{"tokens": [{"name": "a", "sha256": "' + digest + '", "role": "agent", '
            '"apps": ["x", "y"], "namespace": "prod"}]}')
    entry = parse_tokens(text).authenticate("t")
    assert entry is not None
    assert (entry.apps, entry.namespace) == (frozenset({"x", "y"}), "prod")


@pytest.mark.parametrize(("text", "message"), [
    ("tokens:\n  - name: a\n    sha256: 12\n    role: admin\n", "tokens[0].sha256"),
    (f"tokens:\n  - name: a\n    sha256: {'a' * 64}\n    role: root\n", "tokens[0].role"),
    (f"tokens:\n  - name: a\n    sha256: {'a' * 64}\n    role: agent\n", "tokens[0].apps"),
    (f"tokens:\n  - name: a\n    sha256: {'a' * 64}\n    role: viewer\n    apps: [x]\n",
     "only agent tokens"),
    (f"tokens:\n  - name: a\n    sha256: {'a' * 64}\n    role: viewer\n    token: x\n",
     "unknown field(s) token"),
    (f"tokens:\n  - name: a\n    sha256: {'a' * 64}\n    role: viewer\n"
     f"  - name: b\n    sha256: {'a' * 64}\n    role: admin\n", "repeats the sha256"),
    ("tokens: {a: 1}\n", "expected `tokens:` with a list"),
])
def test_a_broken_tokens_file_says_where(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=r"tokens\.yaml") as failure:
        parse_tokens(text, "tokens.yaml")
    assert message in str(failure.value)


def test_reload_keeps_the_previous_tokens_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(GOOD)
    registry = TokenRegistry(path)
    path.write_text("tokens: [")
    assert registry.reload() is False
    assert registry.current.authenticate("s3cret") is not None
    path.write_text("tokens: []\n")
    assert registry.reload() is True
    assert registry.current.authenticate("s3cret") is None


def test_roles_nest_except_the_agent() -> None:
    for method in READ_METHODS:
        assert role_allows(Role.VIEWER, method) and role_allows(Role.OPERATOR, method)
        assert not role_allows(Role.AGENT, method)
    for method in AGENT_METHODS:
        assert role_allows(Role.AGENT, method) and not role_allows(Role.OPERATOR, method)
    assert role_allows(Role.OPERATOR, "/fusebox.v1.BreakerService/SetOverride")
    assert not role_allows(Role.OPERATOR, "/fusebox.v1.SpecService/ApplySpec")
    assert role_allows(Role.ADMIN, "/fusebox.v1.FutureService/Anything")
    assert not role_allows(Role.VIEWER, "/fusebox.v1.FutureService/ListThings")


@pytest.mark.parametrize(("fields", "problem"), [
    ({"listen": "127.0.0.1:1"}, None),
    ({"listen": "[::1]:1"}, None),
    ({"listen": "localhost:1"}, None),
    ({"listen": "0.0.0.0:1"}, "--insecure"),
    ({"listen": "[::]:1"}, "--insecure"),
    ({"listen": "192.168.1.20:1"}, "--insecure"),
    ({"listen": "0.0.0.0:1", "insecure": True}, None),
    ({"listen": "0.0.0.0:1", "tokens_file": Path("t.yaml")}, None),
    ({"tls_cert": Path("c.pem")}, "--tls-key"),
    ({"tls_client_ca": Path("ca.pem")}, "--tls-cert"),
])
def test_safe_defaults(fields: dict[str, object], problem: str | None) -> None:
    found = ServerConfig(**fields).security_problem()  # type: ignore[arg-type]
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_token_create_prints_a_token_whose_entry_authenticates_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "create", "checkout-agents", "--role", "agent", "--app", "checkout"]) == 0
    out = capsys.readouterr().out
    token = out.splitlines()[0].removeprefix("token: ")
    entry = parse_tokens("tokens:\n" + out.split("\n", 2)[2]).authenticate(token)
    assert entry is not None
    assert (entry.name, entry.role, entry.apps) == ("checkout-agents", Role.AGENT, {"checkout"})


def test_token_create_for_an_agent_needs_an_app() -> None:
    assert main(["token", "create", "x", "--role", "agent"]) == ExitCode.USAGE


def test_token_hash_reads_stdin(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    assert main(["token", "hash"]) == 0
    assert capsys.readouterr().out.strip() == hash_token("s3cret")


def test_an_agent_reports_only_for_breakers_its_app_holds(env: Env) -> None:  # noqa: F811
    # checkout's token, checkout's stream: a report for a breaker of another app
    # is rejected, one for its own breaker is taken.
    outgoing: queue.Queue[agent_pb2.ConnectRequest | None] = queue.Queue()

    def requests() -> Iterator[agent_pb2.ConnectRequest]:
        while (message := outgoing.get(timeout=DEADLINE)) is not None:
            yield message

    outgoing.put(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
        app_id="checkout", instance_id="checkout-reporter")))
    call = agent_pb2_grpc.AgentServiceStub(env.channel).Connect(
        requests(), metadata=bearer("checkout-agents"), timeout=DEADLINE)
    try:
        assert next(call).WhichOneof("message") == "snapshot"
        foreign = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                                        kind=policy_pb2.TARGET_KIND_APP, target="payments",
                                        method="charge")
        outgoing.put(agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(
            breakers=[agent_pb2.BreakerOutcomes(key=foreign, runs=[-10])], sequence=1)))
        answer = next(m for m in call if m.WhichOneof("message") == "report_rejected")
        assert answer.report_rejected.key == foreign
    finally:
        outgoing.put(None)
        call.cancel()
