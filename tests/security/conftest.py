"""Fixtures of the security suite: a PKI, a tokens file, servers on loopback threads."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server.security.tokens import TokenEntry, entry_yaml, hash_token
from tests.security.certs import Pki, make_pki

#: name -> (token, role, apps)
TOKENS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "alice-admin": ("tok-admin-1f2e", "admin", ()),
    "oscar-operator": ("tok-operator-9a8b", "operator", ()),
    "vera-viewer": ("tok-viewer-77c1", "viewer", ()),
    "checkout-agents": ("tok-agent-checkout-55d0", "agent", ("checkout",)),
    "inventory-agents": ("tok-agent-inventory-e3b9", "agent", ("inventory",)),
}


def token_of(name: str) -> str:
    return TOKENS[name][0]


def tokens_yaml(names: list[str] | None = None) -> str:
    from fusebox.controlplane.server.security.tokens import Role

    lines = ["tokens:"]
    for name in names or list(TOKENS):
        token, role, apps = TOKENS[name]
        lines.append(entry_yaml(TokenEntry(name, hash_token(token), Role(role), frozenset(apps))))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.yaml"
    path.write_text(tokens_yaml())
    return path


class ServerThread:
    """A FuseboxServer on its own event loop in a thread, for synchronous test clients."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.server: FuseboxServer | None = None
        self.address = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="fusebox-test-server",
                                        daemon=True)

    def _main(self) -> None:
        # asyncio.run: leftover tasks are cancelled before the loop closes.
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with FuseboxServer(self.config) as server:
                self.server = server
                self.address = f"127.0.0.1:{server.port}"
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:  # surfaced by start()
            self._error = e
            self._ready.set()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("test server did not start in 30s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


StartServer = Callable[..., ServerThread]


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(**ServerConfig fields)``: a started server, stopped after the test."""
    started: list[ServerThread] = []

    def start(**fields: object) -> ServerThread:
        config = ServerConfig(
            listen="127.0.0.1:0", store_url="memory://",
            data_dir=tmp_path / "data", health_interval=0.2,
        )
        server = ServerThread(dataclasses.replace(config, **fields)).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
