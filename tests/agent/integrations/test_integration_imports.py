"""The optional HTTP clients are never imported by the agent itself."""

from __future__ import annotations

import subprocess
import sys

from tests.support.specs import REPOSITORY


def test_importing_the_agent_and_the_grpc_integration_imports_neither_requests_nor_httpx() -> None:
    probe = (
        "import sys, agent, agent.integrations, agent.integrations.grpc; "
        "print(sorted({'requests', 'httpx'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPOSITORY, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_each_integration_lists_its_public_names() -> None:
    import agent.integrations.grpc as grpc_integration
    import agent.integrations.httpx as httpx_integration
    import agent.integrations.requests as requests_integration

    for module in (grpc_integration, httpx_integration, requests_integration):
        assert module.__all__ == sorted(module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)
