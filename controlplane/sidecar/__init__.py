"""`fusebox run`: a Dapr-compatible sidecar, so apps in any language get Fusebox policies.

The app calls ``http://localhost:$DAPR_HTTP_PORT/<method>`` with a
``dapr-app-id`` header (or ``/v1.0/invoke/<app>/method/<method>``), exactly as
with Dapr; the sidecar resolves the target through the control plane and
calls it under the caller's policies with cluster-wide breakers. See
docs/sidecar.md.
"""

from fusebox.controlplane.sidecar._discovery import (
    AppNotFound,
    AppResolver,
    InstanceHeartbeat,
    RegistryConnection,
)
from fusebox.controlplane.sidecar._local_server import LOCAL_ADDRESS, ensure_local_control_plane
from fusebox.controlplane.sidecar._proxy import Invocation, SidecarProxy, UpstreamResponse
from fusebox.controlplane.sidecar._run import SidecarOptions, run, run_sidecar
from fusebox.controlplane.sidecar._supervisor import APP_PREFIX, run_app

__all__ = [
    "APP_PREFIX",
    "LOCAL_ADDRESS",
    "AppNotFound",
    "AppResolver",
    "InstanceHeartbeat",
    "Invocation",
    "RegistryConnection",
    "SidecarOptions",
    "SidecarProxy",
    "UpstreamResponse",
    "ensure_local_control_plane",
    "run",
    "run_app",
    "run_sidecar",
]
