"""The Fusebox control-plane gRPC server."""

from controlplane.server.app import FuseboxServer, run, serve
from controlplane.server.config import ServerConfig

__all__ = ["FuseboxServer", "ServerConfig", "run", "serve"]
