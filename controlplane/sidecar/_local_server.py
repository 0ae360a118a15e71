"""The local control plane that `fusebox run` starts on demand (no ``--server`` given).

It is a plain ``fusebox serve`` on ``127.0.0.1:50051`` (the CLI's default
address, so ``fusebox apply`` and ``fusebox breakers list`` reach it without
flags) with its data under the user's data directory (``$FUSEBOX_DATA_DIR``,
else ``$XDG_DATA_HOME/fusebox``, else ``~/.local/share/fusebox``). The first
sidecar starts it detached; later ones find it through its health check. A
lock file there keeps two sidecars starting at once from starting two servers.
It keeps running after the sidecars stop; stop it with
``kill $(cat ~/.local/share/fusebox/local-server.pid)``. ``$FUSEBOX_LOCAL_SERVER``
moves it to another loopback address.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

LOCAL_ADDRESS = "127.0.0.1:50051"
LOCAL_ADDRESS_ENV = "FUSEBOX_LOCAL_SERVER"
LOCK_FILE = "local-server.lock"
PID_FILE = "local-server.pid"
LOG_FILE = "local-server.log"
START_DEADLINE_SECONDS = 20.0


class LocalControlPlaneError(RuntimeError):
    """The local control plane could not be started; the message says where its log is."""


def is_serving(address: str, timeout: float = 0.5) -> bool:
    """Whether a Fusebox server answers SERVING at ``address``."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def ensure_local_control_plane(data_dir: Path, address: str | None = None) -> str:
    """The address of a serving local control plane, started now if none answers."""
    address = address or os.environ.get(LOCAL_ADDRESS_ENV) or LOCAL_ADDRESS
    if is_serving(address):
        return address
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if is_serving(address):  # another sidecar started it while we waited
            return address
        log_path = data_dir / LOG_FILE
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "fusebox.controlplane.cli", "serve", "--listen", address,
                 "--data-dir", str(data_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this sidecar and its terminal's Ctrl-C
            )
        (data_dir / PID_FILE).write_text(f"{process.pid}\n")
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            if is_serving(address):
                return address
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise LocalControlPlaneError(
            f"the local control plane did not start on {address}; see {log_path}")


def local_pid(data_dir: Path) -> int | None:
    """The pid recorded by the sidecar that started the local control plane, if any."""
    try:
        return int((data_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


__all__ = ["LOCAL_ADDRESS", "LocalControlPlaneError", "ensure_local_control_plane",
           "is_serving", "local_pid"]
