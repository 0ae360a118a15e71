"""`fusebox run` without --server: a local control plane started on demand, shared."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusebox.controlplane.sidecar._local_server import is_serving, local_pid
from tests.support.processes import child_env
from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e


@pytest.fixture
def local_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = child_env(FUSEBOX_DATA_DIR=str(tmp_path / "data"),
                    FUSEBOX_LOCAL_SERVER=f"127.0.0.1:{free_port()}",
                    FUSEBOX_CACHE_DIR=str(tmp_path / "cache"))
    yield env
    pid = local_pid(tmp_path / "data")
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


def fusebox_run(env: dict[str, str], *app: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusebox.controlplane.cli", "run", "--app-id", "hello",
         "--dapr-http-port", str(free_port()), "--", *app],
        capture_output=True, text=True, timeout=60, cwd=REPOSITORY, env=env, check=False,
    )


def test_first_run_starts_the_local_control_plane_and_later_runs_share_it(
    local_env: dict[str, str], tmp_path: Path
) -> None:
    show_port = "import os; print('port', os.environ['DAPR_HTTP_PORT'])"
    first = fusebox_run(local_env, sys.executable, "-c", show_port)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "== APP == port" in first.stdout
    pid = local_pid(tmp_path / "data")
    assert pid is not None
    assert is_serving(local_env["FUSEBOX_LOCAL_SERVER"])

    second = fusebox_run(local_env, sys.executable, "-c", "raise SystemExit(3)")
    assert second.returncode == 3  # the app's exit code
    assert local_pid(tmp_path / "data") == pid  # the same local control plane
