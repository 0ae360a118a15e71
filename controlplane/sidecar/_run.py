"""`fusebox run`: a sidecar (agent + HTTP proxy + registration) around one app process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusebox.agent import AsyncAgent
from fusebox.agent.environment import APP_ID, AgentEnvironment
from fusebox.agent.tls import channel_credentials
from fusebox.controlplane.sidecar._discovery import (
    DEFAULT_LEASE_TTL,
    AppResolver,
    InstanceHeartbeat,
    RegistryConnection,
)
from fusebox.controlplane.sidecar._local_server import ensure_local_control_plane
from fusebox.controlplane.sidecar._proxy import SidecarProxy
from fusebox.controlplane.sidecar._supervisor import run_app

log = logging.getLogger("fusebox.sidecar")

DEFAULT_DAPR_HTTP_PORT = 3500
PROXY_HOST = "127.0.0.1"
APP_HOST = "127.0.0.1"
INITIAL_FETCH_TIMEOUT = 3.0  # the agent's default, unless $FUSEBOX_INITIAL_FETCH_TIMEOUT


@dataclass(frozen=True, slots=True)
class SidecarOptions:
    """What `fusebox run` was asked to do."""

    app_id: str
    command: tuple[str, ...]
    app_port: int | None = None
    dapr_http_port: int | None = None  # None: 3500, or a free port when 3500 is taken
    server: str | None = None  # None: the local control plane, started on demand
    namespace: str = "default"
    token: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    lease_ttl: float = DEFAULT_LEASE_TTL
    instance_id: str | None = None  # None: the agent's (hostname-pid-random)
    initial_fetch_timeout: float = INITIAL_FETCH_TIMEOUT

    @classmethod
    def from_flags(
        cls,
        *,
        command: tuple[str, ...],
        app_id: str | None = None,
        namespace: str | None = None,
        server: str | None = None,
        token: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        app_port: int | None = None,
        dapr_http_port: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> SidecarOptions:
        """The flags given (``None``: not given), else the ``FUSEBOX_*`` variables.

        Read by ``fusebox.agent.environment`` as ``AsyncAgent.from_env`` reads
        them (docs/deploy.md): ``FUSEBOX_APP_ID``, ``FUSEBOX_NAMESPACE``,
        ``FUSEBOX_TOKEN``/``FUSEBOX_TOKEN_FILE``, ``FUSEBOX_TLS_*``,
        ``FUSEBOX_INSTANCE_ID``, ``FUSEBOX_INITIAL_FETCH_TIMEOUT``.
        ``server`` is taken as given: the CLI checks ``--server`` and
        ``$FUSEBOX_SERVER`` itself (None: the local control plane).
        Raises ``EnvironmentConfigError`` (a ``ValueError``) for a bad variable,
        and ``ValueError`` when neither ``app_id`` nor ``FUSEBOX_APP_ID`` is set.
        """
        flags = {"app_id": app_id, "namespace": namespace, "token": token, "tls_ca": tls_ca,
                 "tls_cert": tls_cert, "tls_key": tls_key}
        given = {keyword for keyword, value in flags.items() if value is not None}
        env = AgentEnvironment.read(environ, skip={"server", *given})
        app = app_id or env.app_id
        if not app:
            raise ValueError(f"give --app-id, or set {APP_ID.name}")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both for mTLS, or neither")
        certificate = (tls_cert, tls_key) if tls_cert is not None else (env.tls_cert, env.tls_key)
        return cls(
            app_id=app, command=command, app_port=app_port, dapr_http_port=dapr_http_port,
            server=server, namespace=namespace or env.namespace or "default",
            token=token or env.token, tls_ca=tls_ca or env.tls_ca,
            tls_cert=certificate[0], tls_key=certificate[1],
            instance_id=env.instance_id,
            initial_fetch_timeout=(INITIAL_FETCH_TIMEOUT if env.initial_fetch_timeout is None
                                   else env.initial_fetch_timeout),
        )


def say(message: str) -> None:
    """Sidecar lines, told apart from the app's ``== APP ==`` lines."""
    print(f"fusebox: {message}", file=sys.stderr, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((PROXY_HOST, port))
        except OSError:
            return False
    return True


def choose_http_port(requested: int | None) -> int:
    """The proxy's port: the one asked for, else 3500, else a free one (0)."""
    if requested is not None:
        return requested
    return DEFAULT_DAPR_HTTP_PORT if _port_free(DEFAULT_DAPR_HTTP_PORT) else 0


async def _app_listening(port: int) -> None:
    """Return once something accepts connections on the app port."""
    while True:
        try:
            _, writer = await asyncio.open_connection(APP_HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def run_sidecar(options: SidecarOptions) -> int:
    """Start the sidecar, run the app, stop the sidecar; the app's exit code."""
    credentials = None
    if options.tls_ca or options.tls_cert:
        credentials = channel_credentials(options.tls_ca, options.tls_cert, options.tls_key)
    agent = AsyncAgent(app_id=options.app_id, server=options.server,
                       namespace=options.namespace, token=options.token,
                       credentials=credentials, instance_id=options.instance_id,
                       initial_fetch_timeout=options.initial_fetch_timeout)
    connection = RegistryConnection(options.server or "", options.namespace, options.token,
                                    credentials)
    await agent.start()
    resolver = AppResolver(connection, options.app_id)
    app_ready = asyncio.Event()
    proxy = SidecarProxy(agent, resolver, options.app_id,
                         ready=lambda: options.app_port is None or app_ready.is_set())
    heartbeat: InstanceHeartbeat | None = None
    waiting: asyncio.Task[None] | None = None
    try:
        port = await proxy.start(PROXY_HOST, choose_http_port(options.dapr_http_port))
        say(f"fusebox sidecar for app {options.app_id!r}: HTTP API on {PROXY_HOST}:{port}, "
            f"control plane {options.server}")
        if options.app_port is not None:
            heartbeat = InstanceHeartbeat(connection, options.app_id, agent.instance_id,
                                          f"{APP_HOST}:{options.app_port}", options.lease_ttl)
            waiting = asyncio.create_task(_register_when_listening(
                options.app_port, heartbeat, app_ready))
        env = dict(os.environ)
        env.pop("DAPR_GRPC_PORT", None)  # no gRPC API here: apps must not try it
        env.update(DAPR_HTTP_PORT=str(port), APP_ID=options.app_id)
        if options.app_port is not None:
            env["APP_PORT"] = str(options.app_port)
        code = await run_app(options.command, env)
        say(f"app {options.app_id!r} exited with code {code}; stopping the sidecar")
        return code
    finally:
        if waiting is not None:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
        if heartbeat is not None:
            await heartbeat.stop()
        await proxy.stop()
        await resolver.close()
        await agent.aclose()


async def _register_when_listening(port: int, heartbeat: InstanceHeartbeat,
                                   ready: asyncio.Event) -> None:
    # Registering before the app listens would send callers to a closed port.
    await _app_listening(port)
    ready.set()
    heartbeat.start()
    await asyncio.Event().wait()  # keeps the task (and so the heartbeat) owned until stop


def run(options: SidecarOptions, data_dir: Path) -> int:
    """Blocking entry point of `fusebox run`."""
    if not options.command:
        print("error: give the app's command after --, e.g. "
              "fusebox run --app-id checkout -- python app.py", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if options.server is None:
        address = ensure_local_control_plane(data_dir)
        options = dataclasses.replace(options, server=address)
    return asyncio.run(run_sidecar(options))


def command_after_dashes(words: Sequence[str]) -> tuple[str, ...]:
    """argparse keeps the ``--`` before a REMAINDER; drop it."""
    words = list(words)
    if words and words[0] == "--":
        words = words[1:]
    return tuple(words)
