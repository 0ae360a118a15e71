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
