"""Who may call what: each role's RPCs, and the interceptor that enforces them.

Tokens and their roles come from the tokens file
(``fusebox.controlplane.server.security.tokens``). Clients send ``authorization:
Bearer <token>``. ``AuthInterceptor`` checks every RPC of every Fusebox
service, unary and streaming alike, before the handler runs; the health and
reflection services stay open. An agent token is further bound to its
app-ids: the interceptor checks the Connect stream's hello and the instance a
probe lease is asked for (``AGENT_SCOPE_CHECKS``). Every method the agent role
may call must have an entry there, so a new agent RPC cannot be added without
deciding how it is scoped.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc

from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.security.tokens import Role, TokenRegistry
from fusebox.controlplane.spec.model import DEFAULT_NAMESPACE
from fusebox.v1 import agent_pb2, registry_pb2

log = logging.getLogger("fusebox.server.auth")

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


# ---- what each role may call ---------------------------------------------------------

_SPEC = "/fusebox.v1.SpecService/"
_BREAKER = "/fusebox.v1.BreakerService/"
_AGENT = "/fusebox.v1.AgentService/"
_AUDIT = "/fusebox.v1.AuditService/"
_REGISTRY = "/fusebox.v1.RegistryService/"
_BUDGET = "/fusebox.v1.BudgetService/"

#: Reads: every role but ``agent`` may call these.
READ_METHODS = frozenset({
    _SPEC + "GetSpec",
    _SPEC + "ListSpecs",
    _SPEC + "ListSpecRevisions",
    _SPEC + "ResolvePolicies",
    _BREAKER + "ListBreakers",
    _BREAKER + "GetBreaker",
    _BREAKER + "WatchBreakers",
    _AUDIT + "ListAuditEvents",
    _BUDGET + "ListBudgets",
    _BUDGET + "GetBudget",
})
#: Operator actions on live breakers (admin may call them too).
OPERATE_METHODS = frozenset({_BREAKER + "SetOverride", _BREAKER + "ResetBreaker"})
#: The agent's own RPCs; each one is scoped to the token's apps (see AGENT_SCOPE_CHECKS).
#: Sidecars (``fusebox run``) also register their app's address and resolve other apps'.
AGENT_METHODS = frozenset({
    _AGENT + "Connect",
    _AGENT + "AcquireProbeLease",
    _REGISTRY + "RegisterInstance",
    _REGISTRY + "DeregisterInstance",
    _REGISTRY + "ResolveApp",
})

#: Services anyone may call, authenticated or not (load balancers, grpcurl).
OPEN_SERVICES = frozenset({
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
})

ROLE_METHODS: Mapping[Role, frozenset[str]] = {
    Role.OPERATOR: READ_METHODS | OPERATE_METHODS,
    Role.VIEWER: READ_METHODS,
    Role.AGENT: AGENT_METHODS,
}


def role_allows(role: Role, method: str) -> bool:
    """Whether ``role`` may call the full gRPC ``method`` (``/pkg.Service/Method``).

    ``admin`` may call everything, including RPCs added after this table was written.
    """
    return role is Role.ADMIN or method in ROLE_METHODS[role]


# ---- identities ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """The authenticated caller of one RPC.

    ``role`` is None when the server runs without tokens (everything allowed);
    ``name`` is then the client certificate's subject, or what the caller
    claims (``x-fusebox-user``) and its address.
    """

    name: str
    role: Role | None = None
    apps: frozenset[str] = frozenset()
    namespace: str = DEFAULT_NAMESPACE

    def may_act_as(self, namespace: str, app_id: str) -> bool:
        """Whether this caller may connect (or take leases) as ``app_id`` in ``namespace``."""
        if self.role is not Role.AGENT:
            return self.role in (None, Role.ADMIN)
        return namespace == self.namespace and app_id in self.apps


_CURRENT: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "fusebox_identity", default=None
)


def current_identity() -> Identity | None:
    """The identity the interceptor admitted for the RPC being handled (None outside one)."""
    return _CURRENT.get()


def certificate_subject(context: Context) -> str | None:
    """The verified client certificate's subject (mTLS), or None."""
    auth = context.auth_context() or {}
    for key in ("x509_subject", "x509_common_name"):
        values = auth.get(key)
        if values:
            value = values[0]
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _metadata(context: Context) -> dict[str, str]:
    return {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}


def claimed_name(context: Context) -> str:
    """Without tokens: the certificate subject, else the claimed user and the peer."""
    subject = certificate_subject(context)
    if subject:
        return subject
    user = _metadata(context).get("x-fusebox-user", "").strip()[:200]
    peer = str(context.peer())
    return f"{user} via {peer}" if user else peer


# ---- the interceptor -----------------------------------------------------------------

#: (namespace, app_id) of the agent session an instance id belongs to, if any.
InstanceLookup = Callable[[str], tuple[str, str] | None]
_ScopeCheck = Callable[[Identity, object, InstanceLookup], str | None]


def _check_lease(identity: Identity, request: object, lookup: InstanceLookup) -> str | None:
    assert isinstance(request, agent_pb2.AcquireProbeLeaseRequest)
    owner = lookup(request.instance_id)
    if owner is not None and not identity.may_act_as(*owner):
        return (f"token {identity.name!r} may not take probe leases for instance "
                f"{request.instance_id!r} of app {owner[0]}/{owner[1]}")
    return None  # unknown instance: the handler answers FAILED_PRECONDITION


def _check_hello(identity: Identity, request: object, lookup: InstanceLookup) -> str | None:
    assert isinstance(request, agent_pb2.ConnectRequest)
    if request.WhichOneof("message") != "hello":
        return None  # the handler rejects a stream that does not start with hello
    namespace = request.hello.namespace or DEFAULT_NAMESPACE
    if not identity.may_act_as(namespace, request.hello.app_id):
        return (f"token {identity.name!r} may not connect as app "
                f"{namespace}/{request.hello.app_id} (allowed: {identity.namespace}/"
                f"{', '.join(sorted(identity.apps))})")
    return None


def _check_registration(identity: Identity, request: object,
                        lookup: InstanceLookup) -> str | None:
    assert isinstance(request, registry_pb2.RegisterInstanceRequest
                      | registry_pb2.DeregisterInstanceRequest)
    namespace = request.namespace or DEFAULT_NAMESPACE
    if not identity.may_act_as(namespace, request.app_id):
        return (f"token {identity.name!r} may not register instances of app "
                f"{namespace}/{request.app_id}")
    return None


def _check_resolve(identity: Identity, request: object, lookup: InstanceLookup) -> str | None:
    # Any app of the token's namespace may be resolved, by a caller the token may act as:
    # a sidecar needs the addresses of the apps its own app calls.
    assert isinstance(request, registry_pb2.ResolveAppRequest)
    namespace = request.namespace or DEFAULT_NAMESPACE
    if not identity.may_act_as(namespace, request.caller_app_id):
        return (f"token {identity.name!r} may not resolve apps as caller "
                f"{namespace}/{request.caller_app_id or '(none given)'}")
    return None


#: How each agent RPC is bound to the token's apps: unary requests are checked
#: as they are, streams on their first message.
AGENT_SCOPE_CHECKS: Mapping[str, _ScopeCheck] = {
    _AGENT + "Connect": _check_hello,
    _AGENT + "AcquireProbeLease": _check_lease,
    _REGISTRY + "RegisterInstance": _check_registration,
    _REGISTRY + "DeregisterInstance": _check_registration,
    _REGISTRY + "ResolveApp": _check_resolve,
}
assert set(AGENT_SCOPE_CHECKS) == AGENT_METHODS, "every agent RPC needs a scope check"


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates and authorizes every RPC before its handler runs.

    ``tokens`` None: no authentication (loopback or ``--insecure``); the
    identity is still recorded so ``principal()`` names the caller.
    """

    def __init__(self, tokens: TokenRegistry | None, instances: InstanceLookup) -> None:
        self._tokens = tokens
        self._instances = instances

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[grpc.RpcMethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.lstrip("/").split("/", 1)[0] in OPEN_SERVICES:
            return handler
        return guarded(handler, method, self)

    async def identify(self, context: Context) -> Identity:
        """Who the caller is (any role), or abort with UNAUTHENTICATED.

        Without tokens, whoever the caller claims to be (``claimed_name``), no role.
        """
        if self._tokens is None:
            return Identity(claimed_name(context))
        return await self._authenticate(context)

    async def admit(self, context: Context, method: str) -> Identity:
        """The caller's identity, or abort with UNAUTHENTICATED / PERMISSION_DENIED."""
        identity = await self.identify(context)
        if identity.role is not None and not role_allows(identity.role, method):
            log_event(log, logging.WARNING, "permission denied", caller=identity.name,
                      role=identity.role.value, method=method)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"role {identity.role.value} (token {identity.name!r}) may "
                                f"not call {method.lstrip('/')}")
        # Each RPC runs in its own task, so the variable is private to this call.
        _CURRENT.set(identity)
        return identity

    async def _authenticate(self, context: Context) -> Identity:
        assert self._tokens is not None
        header = _metadata(context).get("authorization", "")
        scheme, _, token = header.partition(" ")
        entry = (self._tokens.current.authenticate(token)
                 if scheme.lower() == "bearer" and token.strip() else None)
        if entry is None:
            why = "invalid token" if header else "no token"
            log_event(log, logging.WARNING, "unauthenticated call", reason=why,
                      peer=str(context.peer()))
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"{why}: send `authorization: Bearer <token>` with a token "
                                "from the server's tokens file")
        assert entry is not None
        return Identity(entry.name, entry.role, entry.apps, entry.namespace)

    async def check_scope(self, identity: Identity, method: str, request: object,
                          context: Context) -> None:
        """Abort with PERMISSION_DENIED if an agent token acts outside its apps."""
        if identity.role is not Role.AGENT:
            return
        problem = AGENT_SCOPE_CHECKS[method](identity, request, self._instances)
        if problem is not None:
            log_event(log, logging.WARNING, "permission denied", caller=identity.name,
                      method=method, reason=problem)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)


async def _maybe_await(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def _responses(result: Any) -> AsyncIterator[Any]:
    # A streaming handler is an async generator, or a coroutine using context.write.
    if hasattr(result, "__aiter__"):
        async for response in result:
            yield response
    else:
        await _maybe_await(result)


def guarded(handler: grpc.RpcMethodHandler, method: str,
            auth: AuthInterceptor) -> grpc.RpcMethodHandler:
    """``handler`` with ``auth.admit`` (and the agent scope check) run first.

    The interceptor wraps every RPC with it; the console's gateway
    (``fusebox.controlplane.console``) calls servicers in-process through it, so
    both paths share one check.
    """
    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}

    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            identity = await auth.admit(context, method)
            await auth.check_scope(identity, method, request, context)
            return await _maybe_await(inner_uu(request, context))

        return grpc.unary_unary_rpc_method_handler(unary_unary, **codec)

    if handler.unary_stream is not None:
        inner_us = handler.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            identity = await auth.admit(context, method)
            await auth.check_scope(identity, method, request, context)
            async for response in _responses(inner_us(request, context)):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **codec)

    def scoped(identity: Identity, requests: AsyncIterator[Any],
               context: Context) -> AsyncIterator[Any]:
        if identity.role is not Role.AGENT:
            return requests

        async def first_checked() -> AsyncIterator[Any]:
            first = True
            async for request in requests:
                if first:
                    first = False
                    await auth.check_scope(identity, method, request, context)
                yield request

        return first_checked()

    if handler.stream_unary is not None:
        inner_su = handler.stream_unary

        async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
            identity = await auth.admit(context, method)
            return await _maybe_await(inner_su(scoped(identity, requests, context), context))

        return grpc.stream_unary_rpc_method_handler(stream_unary, **codec)

    inner_ss = handler.stream_stream

    async def stream_stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        identity = await auth.admit(context, method)
        async for response in _responses(inner_ss(scoped(identity, requests, context), context)):
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, **codec)
