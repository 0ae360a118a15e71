"""The optional HTTP clients are never imported by the agent itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e  # starts processes


def test_importing_the_agent_and_the_grpc_integration_imports_neither_requests_nor_httpx() -> None:
    probe = (
        "import sys, fusebox.agent, fusebox.agent.integrations, fusebox.agent.integrations.grpc; "
        "print(sorted({'requests', 'httpx'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPOSITORY, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_each_integration_lists_its_public_names() -> None:
    import fusebox.agent.integrations.grpc as grpc_integration
    import fusebox.agent.integrations.httpx as httpx_integration
    import fusebox.agent.integrations.requests as requests_integration

    for module in (grpc_integration, httpx_integration, requests_integration):
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)


def test_an_integration_without_its_client_names_the_extra_to_install() -> None:
    for client in ("httpx", "requests"):
        probe = (
            f"import sys; sys.modules[{client!r}] = None\n"
            "try:\n"
            f"    import fusebox.agent.integrations.{client}\n"
            "except ModuleNotFoundError as e:\n"
            "    print(e.name, '|', e)\n"
        )
        out = subprocess.run([sys.executable, "-c", probe], cwd=REPOSITORY, check=True,
                             capture_output=True, text=True).stdout.strip()
        assert out == (f"{client} | fusebox.agent.integrations.{client} needs {client}, which "
                       "is optional: pip install 'fusebox-resilience[integrations]'")
