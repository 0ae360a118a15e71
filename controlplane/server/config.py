"""Server configuration (what `fusebox serve` flags fill in)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
    metrics_listen: str | None = None  # host:port for the Prometheus /metrics endpoint
    report_tick: float = 0.005  # seconds: how long reports are merged before one apply
    lease_ttl: float = 2.0  # seconds a half-open probe lease lives unless reported

    def effective_breaker_store_url(self) -> str | None:
        if self.breaker_store_url is not None:
            return self.breaker_store_url
        if self.store_url and self.store_url.startswith(("redis://", "rediss://")):
            return self.store_url
        return None  # embedded: breaker state in memory
