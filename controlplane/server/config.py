"""Server configuration (what `fusebox serve` flags fill in)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

#: Where ``--console`` without ``--http-listen`` serves (loopback, like every default).
DEFAULT_CONSOLE_LISTEN = "127.0.0.1:8686"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = "127.0.0.1:50051"  # port 0 picks a free port (tests)
    store_url: str | None = None  # None: embedded SQLite under data_dir
    data_dir: Path | None = None
    log_format: str = "text"  # text | json
    log_level: str = "info"
    health_interval: float = 1.0  # seconds between store pings
    shutdown_grace: float = 5.0  # seconds in-flight RPCs get on SIGTERM
    breaker_store_url: str | None = None  # None: follow store_url (Redis) or in memory
    http_listen: str | None = None  # host:port for /metrics, /healthz, /readyz (and the console)
    console: bool = False  # serve the operator's console on the HTTP port (docs/console.md)
    convergence_deadline: float = 30.0  # seconds a change waits for agents' acks (metrics)
    report_tick: float = 0.005  # seconds: how long reports are merged before one apply
    lease_ttl: float = 2.0  # seconds a half-open probe lease lives unless reported
    budget_refresh: float = 0.25  # seconds between fleet budget allocations (docs/budgets.md)
    budget_lease: float = 2.0  # seconds a pushed budget share holds unless renewed
    tls_cert: Path | None = None  # PEM certificate chain: serve TLS (with tls_key)
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # PEM CA: require client certificates (mTLS)
    tokens_file: Path | None = None  # bearer tokens and roles (server.security.tokens)
    insecure: bool = False  # allow a non-loopback listen address without authentication

    def effective_http_listen(self) -> str | None:
        """The HTTP port's address: the one given, else the console's default, else none."""
        if self.http_listen is None and self.console:
            return DEFAULT_CONSOLE_LISTEN
        return self.http_listen

    def effective_breaker_store_url(self) -> str | None:
        if self.breaker_store_url is not None:
            return self.breaker_store_url
        # Every Redis topology (redis://, rediss://, redis+cluster://, redis+sentinel://):
        # breakers share the spec store's Redis.
        if self.store_url and self.store_url.lower().startswith(("redis://", "rediss://",
                                                                 "redis+", "rediss+")):
            return self.store_url
        return None  # embedded: breaker state in memory

    @property
    def authenticated(self) -> bool:
        """Whether callers must prove who they are (a token, or a client certificate)."""
        return self.tokens_file is not None or self.tls_client_ca is not None

    def security_problem(self) -> str | None:
        """Why this configuration must not start, or None.

        Without authentication the server may only listen on loopback, unless
        ``insecure`` says the exposure is intended.
        """
        if (self.tls_cert is None) != (self.tls_key is None):
            return "--tls-cert and --tls-key go together: give both, or neither"
        if self.tls_client_ca is not None and self.tls_cert is None:
            return "--tls-client-ca (mTLS) needs --tls-cert and --tls-key"
        if not self.authenticated and not self.insecure and not is_loopback(self.listen):
            return (f"refusing to listen on {self.listen} without authentication: anyone who "
                    "can reach it could change every breaker. Give --tokens-file (and "
                    "--tls-cert/--tls-key), or pass --insecure to expose it anyway")
        return None


def is_loopback(listen: str) -> bool:
    """Whether a ``host:port`` listen address is reachable from this machine only."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
