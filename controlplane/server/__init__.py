"""The Fusebox control-plane gRPC server."""

from fusebox.controlplane.server.app import FuseboxServer, run, serve
from fusebox.controlplane.server.config import ServerConfig

__all__ = ["FuseboxServer", "ServerConfig", "run", "serve"]
