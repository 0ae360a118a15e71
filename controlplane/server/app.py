"""Assemble and run the gRPC server: services, health, reflection, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from fusebox.controlplane.audit import AuditStore, open_audit_store
from fusebox.controlplane.breakers.store import BreakerStore, open_breaker_store
from fusebox.controlplane.budgets import AllocationParams, BudgetStore, open_budget_store
from fusebox.controlplane.server.config import ServerConfig, is_loopback
from fusebox.controlplane.server.engines.breaker_hub import BreakerHub
from fusebox.controlplane.server.engines.budget_hub import BudgetHub
from fusebox.controlplane.server.engines.instance_registry import (
    InstanceRegistry,
    open_instance_registry,
)
from fusebox.controlplane.server.engines.policy_hub import PolicyHub
from fusebox.controlplane.server.http_endpoints import HttpEndpoints
from fusebox.controlplane.server.logs import configure_logging, log_event
from fusebox.controlplane.server.metrics import Metrics
from fusebox.controlplane.server.security.auth import AuthInterceptor
from fusebox.controlplane.server.security.tls import ServerTLS, TLSConfigError, server_credentials
from fusebox.controlplane.server.security.tokens import TokenFileError, TokenRegistry
from fusebox.controlplane.server.services.agent_service import AgentService
from fusebox.controlplane.server.services.audit_recorder import AuditRecorder
from fusebox.controlplane.server.services.audit_service import AuditService
from fusebox.controlplane.server.services.breaker_service import BreakerService
from fusebox.controlplane.server.services.budget_service import BudgetService
from fusebox.controlplane.server.services.registry_service import RegistryService
from fusebox.controlplane.server.services.spec_service import SpecService
from fusebox.controlplane.spec_store import open_store
from fusebox.controlplane.spec_store.base import SpecStore
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.v1 import (
    agent_pb2,
    audit_pb2,
    audit_pb2_grpc,
    breaker_pb2,
    breaker_pb2_grpc,
    budget_pb2,
    budget_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    spec_pb2,
    spec_pb2_grpc,
)

if TYPE_CHECKING:
    from fusebox.controlplane.console.routes import ConsoleSite

log = logging.getLogger("fusebox.server")

SERVICE_NAMES = (
    spec_pb2.DESCRIPTOR.services_by_name["SpecService"].full_name,
    agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name,
    breaker_pb2.DESCRIPTOR.services_by_name["BreakerService"].full_name,
    audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name,
    budget_pb2.DESCRIPTOR.services_by_name["BudgetService"].full_name,
)


def _serialize(message: object) -> bytes:
    """Breaker updates are serialized once per transition and sent as bytes."""
    if isinstance(message, bytes):
        return message
    data: bytes = message.SerializeToString()  # type: ignore[attr-defined]
    return data


def agent_service_handler(servicer: AgentService) -> grpc.GenericRpcHandler:
    """AgentService with a response serializer that passes pre-serialized bytes through."""
    return grpc.method_handlers_generic_handler(
        SERVICE_NAMES[1],
        {
            "Connect": grpc.stream_stream_rpc_method_handler(
                servicer.Connect,
                request_deserializer=agent_pb2.ConnectRequest.FromString,
                response_serializer=_serialize,
            ),
            "AcquireProbeLease": grpc.unary_unary_rpc_method_handler(
                servicer.AcquireProbeLease,
                request_deserializer=agent_pb2.AcquireProbeLeaseRequest.FromString,
                response_serializer=_serialize,
            ),
        },
    )
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
STOP_TASKS_SECONDS = 2.0
HEARTBEAT_SECONDS = 1.0  # the event loop proves it turns (/healthz); changes expire
#: /healthz fails when the event loop has not turned for this long (a stuck process).
LIVENESS_STALL_SECONDS = 10.0


class FuseboxServer:
    """The control plane in one object; ``async with`` starts and stops it.

    ``port`` is the bound port (useful with ``listen="127.0.0.1:0"``).
    """

    def __init__(
        self,
        config: ServerConfig,
        store: SpecStore | None = None,
        breaker_store: BreakerStore | None = None,
        audit_store: AuditStore | None = None,
        instance_registry: InstanceRegistry | None = None,
        budget_store: BudgetStore | None = None,
    ) -> None:
        self.config = config
        # Read first: a broken tokens file must stop the start, before any store opens.
        self.tokens = TokenRegistry(config.tokens_file) if config.tokens_file else None
        self.store = store if store is not None else open_store(
            config.store_url, data_dir=config.data_dir
        )
        self.breaker_store = breaker_store if breaker_store is not None else open_breaker_store(
            config.effective_breaker_store_url()
        )
        # Budgets live where breakers do: in memory, or in the same Redis.
        self.budget_store = budget_store if budget_store is not None else open_budget_store(
            config.effective_breaker_store_url(),
            # A row's demand holds for two refreshes: its owner replica rewrites it by then.
            params=AllocationParams(lease=config.budget_lease,
                                    demand_hold=2 * config.budget_refresh),
        )
        self.audit_store = audit_store if audit_store is not None else open_audit_store(
            config.store_url, data_dir=config.data_dir
        )
        # Sidecars' app addresses (`fusebox run`): shared through Redis when specs are.
        self.instance_registry = instance_registry if instance_registry is not None else (
            open_instance_registry(config.store_url)
        )
        self.metrics = Metrics(connected_agents=lambda: self.hub.session_count,
                               loaded_specs=lambda: self.hub.loaded_specs())
        self.hub = PolicyHub(self.store, self.metrics,
                             convergence_deadline=config.convergence_deadline)
        self.breakers = BreakerHub(self.breaker_store, self.hub, self.metrics,
                                   tick=config.report_tick,
                                   convergence_deadline=config.convergence_deadline)
        self.budgets = BudgetHub(self.budget_store, self.hub, self.metrics,
                                 refresh=config.budget_refresh)
        self.health = HealthServicer()
        self.http = HttpEndpoints(self.metrics.registry, alive=self._liveness,
                                  ready=self._readiness)
        self.http_port = 0
        self.auth = AuthInterceptor(self.tokens, self._instance_owner)
        #: The servicers the gRPC server runs (the console calls the same ones).
        self.spec_service: SpecService | None = None
        self.breaker_service: BreakerService | None = None
        self.audit_service: AuditService | None = None
        self.console: ConsoleSite | None = None
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._serving: bool | None = None
        #: Why the stores are not ready ("" while they answer); read by /readyz.
        self._store_problem = "starting: the stores have not been checked yet"
        self._stopping = False
        self._heartbeat = time.monotonic()

    async def start(self) -> None:
        server = grpc.aio.server(
            interceptors=(self.auth,),
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # Agents send keepalive pings to notice a dead server quickly.
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5000),
                ("grpc.http2.max_ping_strikes", 0),
            ]
        )
        audit = AuditRecorder(self.audit_store)
        self.spec_service = SpecService(self.store, self.hub, audit)
        spec_pb2_grpc.add_SpecServiceServicer_to_server(self.spec_service, server)
        self.audit_service = AuditService(self.audit_store)
        audit_pb2_grpc.add_AuditServiceServicer_to_server(self.audit_service, server)
        server.add_generic_rpc_handlers((agent_service_handler(
            AgentService(self.hub, self.breakers, lease_ttl=self.config.lease_ttl,
                         budgets=self.budgets)
        ),))
        self.breaker_service = BreakerService(self.breaker_store, audit, specs=self.hub.specs)
        breaker_pb2_grpc.add_BreakerServiceServicer_to_server(self.breaker_service, server)
        budget_pb2_grpc.add_BudgetServiceServicer_to_server(BudgetService(self.budget_store),
                                                            server)
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(
            RegistryService(self.instance_registry), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME),
            server,
        )
        try:
            self.port = self._bind(server)
        except RuntimeError as e:  # grpc's way of saying the bind failed
            raise OSError(
                f"cannot listen on {self.config.listen}: address in use or not available"
            ) from e
        await self._check_store()
        await server.start()
        self._server = server
        self._tasks = [
            asyncio.create_task(self._monitor_store(), name="store-health"),
            asyncio.create_task(self.hub.run(), name="policy-hub"),
            asyncio.create_task(self.breakers.run_aggregator(), name="breaker-aggregator"),
            asyncio.create_task(self.breakers.run_advancer(), name="breaker-advancer"),
            asyncio.create_task(self.breakers.run_propagator(), name="breaker-propagator"),
            asyncio.create_task(self.budgets.run(), name="budget-refresh"),
            asyncio.create_task(self._beat(), name="heartbeat"),
        ]
        await self._start_http()
        host = self.config.listen.rsplit(":", 1)[0]
        control_plane_id = ""
        with contextlib.suppress(StoreUnavailable):  # read again when the store is back
            control_plane_id = await self.hub.control_plane_id()
        log_event(log, logging.INFO, "control plane serving", listen=f"{host}:{self.port}",
                  store=self.config.store_url or "embedded",
                  control_plane_id=control_plane_id or "unknown (store unavailable)")

    async def _start_http(self) -> None:
        listen = self.config.effective_http_listen()
        if listen is None:
            return
        if not self.config.console:
            self.http_port = await self.http.start(listen)
            return
        self.console = self._console_site()
        self.http_port = await self.http.start(listen, mounts=(self.console.mount,),
                                               not_found_hint=" (and the console at /console/)")
        host = listen.rsplit(":", 1)[0] or "127.0.0.1"
        log_event(log, logging.INFO, "console serving",
                  url=f"http://{host}:{self.http_port}/console/")
        if not is_loopback(listen):
            log_event(log, logging.WARNING, "console on a non-loopback address: bearer tokens "
                      "cross plain HTTP", listen=listen,
                      hint="listen on loopback and port-forward (ssh -L, kubectl port-forward), "
                           "or put a TLS-terminating proxy in front")

    def _console_site(self) -> ConsoleSite:
        # Imported here: without --console nothing of the console is loaded.
        from fusebox.controlplane.console.gateway import ConsoleGateway
        from fusebox.controlplane.console.routes import ConsoleSite

        assert self.spec_service and self.breaker_service and self.audit_service
        return ConsoleSite(ConsoleGateway(self.auth, specs=self.spec_service,
                                          breakers=self.breaker_service,
                                          audit=self.audit_service))

    def _bind(self, server: grpc.aio.Server) -> int:
        config = self.config
        if config.tls_cert is None or config.tls_key is None:
            port: int = server.add_insecure_port(config.listen)
        else:
            tls = ServerTLS(config.tls_cert, config.tls_key, config.tls_client_ca)
            port = server.add_secure_port(config.listen, server_credentials(tls))
        if not config.authenticated:
            log_event(log, logging.WARNING, "no authentication: every caller may do everything",
                      listen=config.listen, hint="give --tokens-file (see docs/security.md)")
        return port

    def _instance_owner(self, instance_id: str) -> tuple[str, str] | None:
        session = self.hub.find(instance_id)
        return None if session is None else (session.namespace, session.app_id)

    def reload_tokens(self) -> bool:
        """Re-read the tokens file (SIGHUP); a broken file keeps the previous tokens."""
        if self.tokens is None:
            log_event(log, logging.WARNING, "SIGHUP ignored: no tokens file configured")
            return False
        return self.tokens.reload()

    async def _check_store(self) -> None:
        which = "spec store"
        try:
            await self.store.ping()
            which = "breaker store"
            await self.breaker_store.ping()
            serving = True
            self._store_problem = ""
        except StoreUnavailable as e:
            serving = False
            self._store_problem = f"{which} unavailable: {e}"
            if self._serving is not False:
                log_event(log, logging.ERROR, f"{which} unavailable", error=str(e))
        if serving != self._serving:
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", *SERVICE_NAMES):
                await self.health.set(name, status)
            if serving and self._serving is False:
                log_event(log, logging.INFO, "spec store reachable again")
                with contextlib.suppress(StoreUnavailable):
                    await self.hub.push_all()
            self._serving = serving

    async def _monitor_store(self) -> None:
        while True:
            await asyncio.sleep(self.config.health_interval)
            await self._check_store()

    async def _beat(self) -> None:
        """Prove the event loop turns (/healthz) and drop changes past their deadline."""
        while True:
            self._heartbeat = time.monotonic()
            self.hub.convergence.expire()
            self.breakers.convergence.expire()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def _liveness(self) -> str | None:
        """/healthz: None while the process serves (a loop that turns too rarely fails it)."""
        stalled = time.monotonic() - self._heartbeat
        if stalled > LIVENESS_STALL_SECONDS:
            return f"event loop stalled: no heartbeat for {stalled:.0f}s"
        return None

    def _readiness(self) -> str | None:
        """/readyz: None when the stores answer and gRPC serves, else why not."""
        if self._stopping:
            return "shutting down"
        if self._server is None:
            return "starting: the gRPC server is not serving yet"
        return self._store_problem or None

    async def stop(self) -> None:
        self._stopping = True
        if self.console is not None:
            await self.console.close()  # the pages' feeds end before the stores close
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a background task that swallows its cancellation must not
            # keep the process from exiting.
            _, pending = await asyncio.wait(self._tasks, timeout=STOP_TASKS_SECONDS)
            for task in pending:
                log_event(log, logging.WARNING, "background task did not stop in time",
                          task=task.get_name())
        self._tasks = []
        log_event(log, logging.DEBUG, "background tasks stopped")
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            self.hub.close_all()
            await self._server.stop(self.config.shutdown_grace)
            self._server = None
        log_event(log, logging.DEBUG, "grpc server stopped")
        for closing in (self.store, self.breaker_store, self.audit_store,
                        self.instance_registry, self.budget_store):
            try:
                await asyncio.wait_for(closing.close(), STOP_TASKS_SECONDS)
            except TimeoutError:
                log_event(log, logging.WARNING, "store did not close in time")
        await self.http.stop()
        log_event(log, logging.INFO, "control plane stopped")

    async def __aenter__(self) -> FuseboxServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads the tokens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with FuseboxServer(config) as server:
        loop.add_signal_handler(signal.SIGHUP, server.reload_tokens)
        await stop.wait()
        log_event(log, logging.INFO, "shutting down", grace_seconds=config.shutdown_grace)


def run(config: ServerConfig) -> int:
    """Blocking entry point of `fusebox serve`; returns the process exit code."""
    configure_logging(config.log_format, config.log_level)
    problem = config.security_problem()
    if problem is not None:
        log_event(log, logging.ERROR, "cannot start", error=problem)
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except (TokenFileError, TLSConfigError) as e:
        log_event(log, logging.ERROR, "cannot start", error=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        log_event(log, logging.ERROR, "cannot start", error=str(e))
        return 1
    return 0
