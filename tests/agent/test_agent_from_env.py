"""``Agent.from_env`` / ``AsyncAgent.from_env``: the FUSEBOX_* contract (docs/deploy.md).

Each variable sets its constructor keyword; a bad value is an
``EnvironmentConfigError`` naming the variable and what it accepts; keyword
overrides win, and the variables they replace are not even read. An agent
built from the environment syncing over TLS with a token file is in
tests/security/test_environment_contract.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusebox.agent import Agent, AsyncAgent, FuseboxError
from fusebox.agent.environment import (
    DEFAULT_SERVER,
    VARIABLES,
    AgentEnvironment,
    EnvironmentConfigError,
    agent_keywords,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
BASE = {"FUSEBOX_APP_ID": "checkout"}


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text(PEM)
    return path


@pytest.fixture
def closing() -> Iterator[list[Agent]]:
    agents: list[Agent] = []
    yield agents
    for agent in agents:
        agent.close()


def sync_agent(closing: list[Agent], **env: str) -> Agent:
    agent = Agent.from_env(environ={**BASE, **env})
    closing.append(agent)
    return agent


# ---- each variable sets its keyword ---------------------------------------------------


def test_only_the_app_id_is_needed_the_rest_has_the_constructors_defaults(
    closing: list[Agent],
) -> None:
    agent = sync_agent(closing)
    assert (agent.app_id, agent.server, agent.namespace) == ("checkout", DEFAULT_SERVER,
                                                             "default")
    assert agent.initial_fetch_timeout == 3.0
    assert agent.instance_id.count("-") >= 2  # hostname-pid-random


async def test_the_async_agent_reads_the_same_variables() -> None:
    agent = AsyncAgent.from_env(environ={**BASE, "FUSEBOX_NAMESPACE": "shop",
                                         "FUSEBOX_INSTANCE_ID": "checkout-7d9-x2"})
    try:
        assert type(agent) is AsyncAgent
        assert (agent.app_id, agent.namespace, agent.instance_id) == (
            "checkout", "shop", "checkout-7d9-x2")
    finally:
        await agent.aclose()


@pytest.mark.parametrize(("variable", "value", "attribute", "expected"), [
    ("FUSEBOX_SERVER", "dns:///fusebox.fusebox.svc.cluster.local:50051", "server",
     "dns:///fusebox.fusebox.svc.cluster.local:50051"),
    ("FUSEBOX_NAMESPACE", "shop", "namespace", "shop"),
    ("FUSEBOX_INSTANCE_ID", "checkout-5f7c9-abcde", "instance_id", "checkout-5f7c9-abcde"),
    ("FUSEBOX_INITIAL_FETCH_TIMEOUT", "0.5", "initial_fetch_timeout", 0.5),
    ("FUSEBOX_INITIAL_FETCH_TIMEOUT", "0", "initial_fetch_timeout", 0.0),
])
def test_a_variable_sets_the_agent_attribute_it_names(
    closing: list[Agent], variable: str, value: str, attribute: str, expected: Any,
) -> None:
    assert getattr(sync_agent(closing, **{variable: value}), attribute) == expected


def test_the_token_comes_from_the_variable_or_from_the_file(tmp_path: Path) -> None:
    assert agent_keywords({**BASE, "FUSEBOX_TOKEN": "fbx_abc"})["token"] == "fbx_abc"
    token_file = tmp_path / "token"
    token_file.write_text("fbx_from_a_secret\n")  # a mounted Secret ends with a newline
    keywords = agent_keywords({**BASE, "FUSEBOX_TOKEN_FILE": str(token_file)})
    assert keywords["token"] == "fbx_from_a_secret"


def test_tls_variables_give_the_tls_keywords_as_paths(pem: Path) -> None:
    env = {**BASE, "FUSEBOX_TLS_CA": str(pem), "FUSEBOX_TLS_CERT": str(pem),
           "FUSEBOX_TLS_KEY": str(pem)}
    keywords = agent_keywords(env)
    assert (keywords["tls_ca"], keywords["tls_cert"], keywords["tls_key"]) == (
        str(pem), str(pem), str(pem))


@pytest.mark.parametrize("server", [
    "127.0.0.1:50051", "fusebox.fusebox.svc:50051", "[::1]:50051",
    "dns:///fusebox.fusebox.svc.cluster.local:50051", "dns:fusebox:50051",
    "ipv4:10.0.0.7:50051,10.0.0.8:50051", "ipv6:[::1]:50051", "unix:/run/fusebox.sock",
    "unix:///run/fusebox.sock",
])
def test_every_grpc_target_form_is_accepted(server: str) -> None:
    assert agent_keywords({**BASE, "FUSEBOX_SERVER": server})["server"] == server


def test_an_empty_variable_counts_as_unset(closing: list[Agent]) -> None:
    agent = sync_agent(closing, FUSEBOX_SERVER="", FUSEBOX_NAMESPACE="",
                       FUSEBOX_INITIAL_FETCH_TIMEOUT="", FUSEBOX_TOKEN="")
    assert (agent.server, agent.namespace, agent.initial_fetch_timeout) == (
        DEFAULT_SERVER, "default", 3.0)


def test_without_environ_the_process_environment_is_read(
    monkeypatch: pytest.MonkeyPatch, closing: list[Agent],
) -> None:
    monkeypatch.setenv("FUSEBOX_APP_ID", "inventory")
    monkeypatch.setenv("FUSEBOX_SERVER", "fusebox:50051")
    agent = Agent.from_env()
    closing.append(agent)
    assert (agent.app_id, agent.server) == ("inventory", "fusebox:50051")


# ---- overrides ----------------------------------------------------------------------------


def test_an_override_wins_and_its_variable_is_not_read(closing: list[Agent]) -> None:
    agent = Agent.from_env(
        environ={**BASE, "FUSEBOX_INITIAL_FETCH_TIMEOUT": "soon", "FUSEBOX_SERVER": "x:1"},
        initial_fetch_timeout=0.25, server="fusebox:50051",
    )
    closing.append(agent)
    assert (agent.initial_fetch_timeout, agent.server) == (0.25, "fusebox:50051")


def test_app_id_may_be_an_override_and_other_keywords_pass_through(
    closing: list[Agent],
) -> None:
    agent = Agent.from_env(environ={}, app_id="checkout", cluster_breakers=False,
                           server=None)
    closing.append(agent)
    assert (agent.app_id, agent.cluster_breakers, agent.server) == ("checkout", False, None)


def test_a_token_override_replaces_both_token_variables(tmp_path: Path) -> None:
    env = {**BASE, "FUSEBOX_TOKEN": "a", "FUSEBOX_TOKEN_FILE": str(tmp_path / "missing")}
    assert agent_keywords(env, token="explicit")["token"] == "explicit"


def test_credentials_replace_every_tls_variable(tmp_path: Path) -> None:
    env = {**BASE, "FUSEBOX_TLS_CA": str(tmp_path / "missing.pem")}
    keywords = agent_keywords(env, credentials="prebuilt")
    assert "tls_ca" not in keywords
    assert keywords["credentials"] == "prebuilt"


# ---- bad values name the variable ---------------------------------------------------------


def raised(env: dict[str, str]) -> EnvironmentConfigError:
    with pytest.raises(EnvironmentConfigError) as caught:
        Agent.from_env(environ=env)
    return caught.value


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("FUSEBOX_INITIAL_FETCH_TIMEOUT", "3 seconds", "not a number; accepted: a number of seconds"),
    ("FUSEBOX_INITIAL_FETCH_TIMEOUT", "-1", "out of range"),
    ("FUSEBOX_INITIAL_FETCH_TIMEOUT", "nan", "out of range"),
    ("FUSEBOX_INITIAL_FETCH_TIMEOUT", "inf", "out of range"),
    ("FUSEBOX_SERVER", "http://fusebox:50051", "a URL scheme (http://) is not a gRPC target"),
    ("FUSEBOX_SERVER", "grpcs://fusebox:50051", "TLS is FUSEBOX_TLS_CA"),
    ("FUSEBOX_SERVER", "fusebox.fusebox.svc", "no port"),
    ("FUSEBOX_SERVER", "fusebox:http", "no port"),
    ("FUSEBOX_SERVER", "fusebox :50051", "contains spaces"),
    ("FUSEBOX_NAMESPACE", "my shop", "contains spaces"),
    ("FUSEBOX_APP_ID", "check out", "contains spaces"),
    ("FUSEBOX_INSTANCE_ID", "pod 1", "contains spaces"),
])
def test_a_bad_value_names_the_variable_the_value_and_what_is_accepted(
    variable: str, value: str, says: str,
) -> None:
    error = raised({**BASE, variable: value})
    assert error.variable == variable
    assert str(error).startswith(f"{variable}={value!r}: ")
    assert says in str(error)
    assert "accepted: " in str(error)


def test_the_error_is_a_value_error_in_the_fusebox_tree() -> None:
    error = raised({**BASE, "FUSEBOX_INITIAL_FETCH_TIMEOUT": "x"})
    assert isinstance(error, ValueError)
    assert isinstance(error, FuseboxError)


def test_a_missing_app_id_names_the_variable_and_the_override() -> None:
    error = raised({"FUSEBOX_SERVER": "fusebox:50051"})
    assert error.variable == "FUSEBOX_APP_ID"
    assert str(error).startswith("FUSEBOX_APP_ID: not set; accepted: ")
    assert "app_id=" in str(error)


def test_token_file_problems_name_the_variable_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    error = raised({**BASE, "FUSEBOX_TOKEN_FILE": str(missing)})
    assert str(error).startswith(f"FUSEBOX_TOKEN_FILE={str(missing)!r}: cannot read the file: ")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "the file is empty" in str(raised({**BASE, "FUSEBOX_TOKEN_FILE": str(empty)}))


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    error = raised({**BASE, "FUSEBOX_TOKEN": "a", "FUSEBOX_TOKEN_FILE": str(tmp_path / "t")})
    assert error.variable == "FUSEBOX_TOKEN"
    assert "set together with FUSEBOX_TOKEN_FILE" in str(error)


def test_a_bad_token_never_appears_in_the_error() -> None:
    error = raised({**BASE, "FUSEBOX_TOKEN": "fbx_secret part"})
    assert error.variable == "FUSEBOX_TOKEN"
    assert "secret" not in str(error)


def test_tls_files_must_be_readable_pem(tmp_path: Path) -> None:
    missing = tmp_path / "ca.crt"
    error = raised({**BASE, "FUSEBOX_TLS_CA": str(missing)})
    assert str(error).startswith(f"FUSEBOX_TLS_CA={str(missing)!r}: cannot read the file")
    missing.write_text("not a certificate")
    assert "not a PEM file" in str(raised({**BASE, "FUSEBOX_TLS_CA": str(missing)}))


def test_a_client_certificate_without_its_key_is_refused(pem: Path) -> None:
    error = raised({**BASE, "FUSEBOX_TLS_CERT": str(pem)})
    assert error.variable == "FUSEBOX_TLS_CERT"
    assert "set without FUSEBOX_TLS_KEY" in str(error)
    error = raised({**BASE, "FUSEBOX_TLS_KEY": str(pem)})
    assert error.variable == "FUSEBOX_TLS_KEY"


# ---- the contract itself --------------------------------------------------------------------


def test_every_variable_is_prefixed_and_read_once() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    assert all(name.startswith("FUSEBOX_") for name in names)


def test_reading_an_empty_environment_sets_nothing() -> None:
    assert AgentEnvironment.read({}).keywords() == {}
