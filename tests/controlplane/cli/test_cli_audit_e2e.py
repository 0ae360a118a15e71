"""`fusebox audit` end to end: a real `fusebox serve` process, the CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, child_env
from tests.support.specs import REPOSITORY, SEED_SPEC_PATH

pytestmark = pytest.mark.e2e  # starts processes

DEADLINE_SECONDS = 60


def fusebox(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusebox.controlplane.cli", "--server", address, *args],
        capture_output=True, text=True, timeout=DEADLINE_SECONDS, cwd=REPOSITORY,
        env=child_env(), check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_fusebox_audit_lists_spec_changes_newest_first_in_table_and_json(
    tmp_path: Path,
) -> None:
    with ServerProcess(tmp_path) as server:
        address = server.address
        ok(fusebox(address, "apply", "-f", str(SEED_SPEC_PATH), "--dry-run"))
        ok(fusebox(address, "apply", "-f", str(SEED_SPEC_PATH)))
        ok(fusebox(address, "delete", "spec", "myresiliency"))

        events = json.loads(ok(fusebox(address, "audit", "--since", "1h", "-o", "json")))
        assert [e["action"] for e in events["events"]] == ["spec-delete", "spec-apply"]
        deleted, applied = events["events"]
        assert applied["target"] == deleted["target"] == "default/myresiliency"
        assert applied["previous"] == "none"
        assert deleted["previous"] == applied["current"]
        assert deleted["current"] == "revision 2 (deleted)"
        assert applied["actor"] and applied["time"].endswith("Z")

        table = ok(fusebox(address, "audit", "--limit", "1")).splitlines()
        assert table[0].split()[:4] == ["AGE", "ACTOR", "ACTION", "TARGET"]
        assert len(table) == 2 and "spec-delete" in table[1]

        nothing = fusebox(address, "audit", "--kind", "breaker")
        assert nothing.returncode == 0 and nothing.stdout == ""
        assert "no audit events found" in nothing.stderr

        refused = fusebox(address, "audit", "--limit", "5000")
        assert refused.returncode == 2 and "expected 1 to 1000 events" in refused.stderr
