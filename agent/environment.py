"""The ``FUSEBOX_*`` environment contract: one reading for the agent and the sidecar.

``Agent.from_env()`` / ``AsyncAgent.from_env()`` build an agent from these
variables, and ``fusebox run`` takes them as the defaults of its flags; both go
through ``AgentEnvironment.read``, so a value means the same everywhere and a
bad one fails the same way, naming the variable and what it accepts
(``EnvironmentConfigError``). The table, with defaults and a Kubernetes
example, is in docs/deploy.md.

>>> env = AgentEnvironment.read({"FUSEBOX_APP_ID": "checkout",
...                              "FUSEBOX_INITIAL_FETCH_TIMEOUT": "0.5"})
>>> env.keywords()
{'app_id': 'checkout', 'initial_fetch_timeout': 0.5}
>>> AgentEnvironment.read({"FUSEBOX_INITIAL_FETCH_TIMEOUT": "3 seconds"})
Traceback (most recent call last):
...
fusebox.agent.environment.EnvironmentConfigError: FUSEBOX_INITIAL_FETCH_TIMEOUT='3 seconds': \
not a number; accepted: a number of seconds >= 0, e.g. 3 or 0.5 (0: do not wait)

An empty variable counts as unset (Kubernetes manifests often say ``value: ""``).
The agent's cache directory, ``FUSEBOX_CACHE_DIR``, is read where the cache
is (the link's ``default_cache_dir``), for ``Agent(...)`` and ``from_env`` alike.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fusebox.agent._errors import FuseboxError

__all__ = [
    "DEFAULT_SERVER",
    "VARIABLES",
    "AgentEnvironment",
    "EnvironmentConfigError",
    "EnvironmentVariable",
    "agent_keywords",
]

#: Where an agent built from the environment connects when ``FUSEBOX_SERVER`` is
#: unset: the CLI's default too (a control plane from ``make run`` / ``fusebox serve``).
DEFAULT_SERVER: Final = "127.0.0.1:50051"


@dataclass(frozen=True, slots=True)
class EnvironmentVariable:
    """One variable of the contract: which agent keyword it sets and what it accepts."""

    name: str
    keyword: str | None  # None: read elsewhere (FUSEBOX_CACHE_DIR, by the link)
    accepted: str
    secret: bool = False  # never echoed in an error


SERVER = EnvironmentVariable(
    "FUSEBOX_SERVER", "server",
    "a gRPC target: HOST:PORT, dns:///HOST:PORT, ipv4:ADDR:PORT[,ADDR:PORT...], "
    "ipv6:[ADDR]:PORT[,...] or unix:PATH, e.g. fusebox.fusebox.svc:50051",
)
APP_ID = EnvironmentVariable("FUSEBOX_APP_ID", "app_id",
                             "the app-id, as specs name it in scopes and targets, e.g. checkout")
NAMESPACE = EnvironmentVariable("FUSEBOX_NAMESPACE", "namespace",
                                "a namespace name without spaces, e.g. default")
INSTANCE_ID = EnvironmentVariable(
    "FUSEBOX_INSTANCE_ID", "instance_id",
    "a name unique to this process among the app's instances, e.g. the pod name",
)
TOKEN = EnvironmentVariable("FUSEBOX_TOKEN", "token",
                            "a bearer token (`fusebox token create`)", secret=True)
TOKEN_FILE = EnvironmentVariable("FUSEBOX_TOKEN_FILE", "token",
                                 "the path of a readable file holding the bearer token")
TLS_CA = EnvironmentVariable("FUSEBOX_TLS_CA", "tls_ca",
                             "the path of a readable PEM file (the CA of the server's certificate)")
TLS_CERT = EnvironmentVariable("FUSEBOX_TLS_CERT", "tls_cert",
                               "the path of a readable PEM file (a client certificate, for mTLS)")
TLS_KEY = EnvironmentVariable("FUSEBOX_TLS_KEY", "tls_key",
                              "the path of a readable PEM file (the client certificate's key)")
INITIAL_FETCH_TIMEOUT = EnvironmentVariable(
    "FUSEBOX_INITIAL_FETCH_TIMEOUT", "initial_fetch_timeout",
    "a number of seconds >= 0, e.g. 3 or 0.5 (0: do not wait)",
)
CACHE_DIR = EnvironmentVariable("FUSEBOX_CACHE_DIR", None,
                                "a writable directory for the policy cache")

#: Every variable of the contract, in the order docs/deploy.md lists them.
VARIABLES: Final = (SERVER, APP_ID, NAMESPACE, INSTANCE_ID, TOKEN, TOKEN_FILE, TLS_CA,
                    TLS_CERT, TLS_KEY, INITIAL_FETCH_TIMEOUT, CACHE_DIR)

# An agent keyword given explicitly: the variables it makes irrelevant (not read, not checked).
_SKIPPED_BY: Final[Mapping[str, tuple[EnvironmentVariable, ...]]] = {
    "server": (SERVER,),
    "app_id": (APP_ID,),
    "namespace": (NAMESPACE,),
    "instance_id": (INSTANCE_ID,),
    "token": (TOKEN, TOKEN_FILE),
    "tls_ca": (TLS_CA,),
    # A client certificate and its key go together: either keyword replaces both.
    "tls_cert": (TLS_CERT, TLS_KEY),
    "tls_key": (TLS_CERT, TLS_KEY),
    "credentials": (TLS_CA, TLS_CERT, TLS_KEY),
    "initial_fetch_timeout": (INITIAL_FETCH_TIMEOUT,),
}

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GRPC_URI_SCHEMES = frozenset({"dns", "unix"})
_GRPC_PREFIXES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")


class EnvironmentConfigError(FuseboxError, ValueError):
    """A ``FUSEBOX_*`` variable holds a value that cannot be used.

    ``variable`` names it; the message says what was wrong and what is accepted
    (a secret's value is never repeated).
    """

    def __init__(self, variable: EnvironmentVariable | str, value: str | None, problem: str,
                 accepted: str | None = None) -> None:
        name = variable if isinstance(variable, str) else variable.name
        if accepted is None and isinstance(variable, EnvironmentVariable):
            accepted = variable.accepted
        shown = name if value is None else f"{name}={value!r}"
        message = f"{shown}: {problem}" + (f"; accepted: {accepted}" if accepted else "")
        super().__init__(message)
        self.variable = name


@dataclass(frozen=True, slots=True)
class AgentEnvironment:
    """What the ``FUSEBOX_*`` variables say, checked; ``None`` where one is unset.

    ``token`` is the token itself, read from ``FUSEBOX_TOKEN_FILE`` when that
    is the variable set; TLS files are checked (readable, PEM) and kept as paths.
    """

    server: str | None = None
    app_id: str | None = None
    namespace: str | None = None
    instance_id: str | None = None
    token: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    initial_fetch_timeout: float | None = None

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None, *,
             skip: Collection[str] = ()) -> AgentEnvironment:
        """Read and check the variables of ``environ`` (default ``os.environ``).

        ``skip``: agent keywords given some other way (``from_env``'s overrides,
        ``fusebox run``'s flags); their variables are neither read nor checked.
        Raises ``EnvironmentConfigError`` for the first bad value.
        """
        source = os.environ if environ is None else environ
        skipped = {v.name for keyword in skip for v in _SKIPPED_BY.get(keyword, ())}

        def get(variable: EnvironmentVariable) -> str | None:
            if variable.name in skipped:
                return None
            return source.get(variable.name) or None

        token, token_file = get(TOKEN), get(TOKEN_FILE)
        if token is not None and token_file is not None:
            raise EnvironmentConfigError(
                TOKEN.name, None, f"set together with {TOKEN_FILE.name}",
                "one of the two (prefer the file: a mounted Secret)",
            )
        tls_cert, tls_key = get(TLS_CERT), get(TLS_KEY)
        if (tls_cert is None) != (tls_key is None):
            present, missing = (TLS_CERT, TLS_KEY) if tls_key is None else (TLS_KEY, TLS_CERT)
            raise EnvironmentConfigError(
                present, None, f"set without {missing.name}",
                "both (a client certificate and its key, for mTLS) or neither",
            )
        return cls(
            server=_checked_server(get(SERVER)),
            app_id=_checked_name(APP_ID, get(APP_ID)),
            namespace=_checked_name(NAMESPACE, get(NAMESPACE)),
            instance_id=_checked_name(INSTANCE_ID, get(INSTANCE_ID)),
            token=_checked_token(token) if token_file is None else _token_from(token_file),
            tls_ca=_checked_pem(TLS_CA, get(TLS_CA)),
            tls_cert=_checked_pem(TLS_CERT, tls_cert),
            tls_key=_checked_pem(TLS_KEY, tls_key),
            initial_fetch_timeout=_checked_seconds(INITIAL_FETCH_TIMEOUT,
                                                   get(INITIAL_FETCH_TIMEOUT)),
        )

    def keywords(self) -> dict[str, Any]:
        """The ``Agent`` keywords the environment sets (unset variables are left out)."""
        found = {
            "server": self.server, "app_id": self.app_id, "namespace": self.namespace,
            "instance_id": self.instance_id, "token": self.token, "tls_ca": self.tls_ca,
            "tls_cert": self.tls_cert, "tls_key": self.tls_key,
            "initial_fetch_timeout": self.initial_fetch_timeout,
        }
        return {keyword: value for keyword, value in found.items() if value is not None}


def agent_keywords(environ: Mapping[str, str] | None = None,
                   **overrides: Any) -> dict[str, Any]:
    """The keywords ``Agent.from_env(**overrides)`` passes to the constructor.

    The environment's, with ``overrides`` on top (an override's variables are
    not read); ``server`` defaults to ``DEFAULT_SERVER``. The app-id must come
    from one or the other.
    """
    keywords: dict[str, Any] = {"server": DEFAULT_SERVER}
    keywords.update(AgentEnvironment.read(environ, skip=overrides.keys()).keywords())
    keywords.update(overrides)
    if not keywords.get("app_id"):
        raise EnvironmentConfigError(APP_ID, None, "not set",
                                     f"{APP_ID.accepted}; or pass app_id= to from_env")
    return keywords


def _checked_server(value: str | None) -> str | None:
    # The forms gRPC takes; the CLI's parser (controlplane/cli/_address.py) checks
    # more, but the agent never imports the control plane: catch the usual slips.
    if value is None:
        return None
    if value != value.strip() or any(c.isspace() for c in value):
        raise EnvironmentConfigError(SERVER, value, "contains spaces")
    url = _URL_SCHEME.match(value)
    if url is not None and url.group(1).lower() not in _GRPC_URI_SCHEMES:
        tls = " (TLS is FUSEBOX_TLS_CA, not a scheme)" if url.group(1).lower() in (
            "https", "grpcs") else ""
        raise EnvironmentConfigError(
            SERVER, value, f"a URL scheme ({url.group(1)}://) is not a gRPC target{tls}")
    if not value.lower().startswith(_GRPC_PREFIXES):
        host, colon, port = value.rpartition(":")
        if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise EnvironmentConfigError(SERVER, value, "no port (HOST:PORT)")
    return value


def _checked_name(variable: EnvironmentVariable, value: str | None) -> str | None:
    if value is not None and any(c.isspace() for c in value):
        raise EnvironmentConfigError(variable, value, "contains spaces")
    return value


def _checked_token(value: str | None) -> str | None:
    if value is None:
        return None
    token = value.strip()
    if not token or any(c.isspace() for c in token):
        raise EnvironmentConfigError(TOKEN, None, "contains spaces inside the token")
    return token


def _token_from(path: str) -> str:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise EnvironmentConfigError(TOKEN_FILE, path, f"cannot read the file: {why}") from None
    token = text.strip()
    if not token:
        raise EnvironmentConfigError(TOKEN_FILE, path, "the file is empty")
    if any(c.isspace() for c in token):
        raise EnvironmentConfigError(TOKEN_FILE, path,
                                     "the file holds more than one word (one token expected)")
    return token


def _checked_pem(variable: EnvironmentVariable, path: str | None) -> str | None:
    if path is None:
        return None
    try:
        head = Path(path).read_bytes()
    except OSError as e:
        raise EnvironmentConfigError(variable, path,
                                     f"cannot read the file: {e.strerror or e}") from None
    if b"-----BEGIN " not in head:
        raise EnvironmentConfigError(variable, path, "not a PEM file (no -----BEGIN line)")
    return path


def _checked_seconds(variable: EnvironmentVariable, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise EnvironmentConfigError(variable, value, "not a number") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise EnvironmentConfigError(variable, value, "out of range")
    return seconds
