"""The fusebox CLI end to end: a real `fusebox serve` process, the CLI as subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, child_env
from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY, SEED_SPEC

pytestmark = pytest.mark.e2e

CLI_DEADLINE_SECONDS = 60.0

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
"""


def seed_named(name: str, namespace: str | None = None) -> str:
    """The seed spec under another name (and namespace), so tests do not share a spec."""
    metadata = f"  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    return SEED_SPEC.replace("  name: myresiliency\n", metadata)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ServerProcess(tmp_path_factory.mktemp("fusebox-serve")) as process:
        yield process.address


def fusebox(address: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusebox.controlplane.cli", "--server", address, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE_SECONDS,
        cwd=REPOSITORY,
        env=child_env(),
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_seed_spec_applies_reads_back_and_reapplies_unchanged(server: str, tmp_path: Path) -> None:
    spec = write(tmp_path / "resiliency.yaml", SEED_SPEC)

    assert ok(fusebox(server, "apply", "-f", spec)).splitlines() == [
        "resiliency.dapr.io/myresiliency created (revision 1)"
    ]

    stored = json.loads(ok(fusebox(server, "get", "specs", "myresiliency", "-o", "json")))
    assert (stored["namespace"], stored["name"], stored["revision"]) == (
        "default",
        "myresiliency",
        1,
    )
    assert stored["document"]["scopes"] == ["checkout"]
    assert stored["document"]["spec"]["policies"]["circuitBreakers"]["simpleCB"] == {
        "maxRequests": 1,
        "timeout": "5s",
        "trip": "consecutiveFailures >= 5",
    }
    assert len(stored["digest"]) == 64

    as_yaml = ok(fusebox(server, "get", "specs", "myresiliency", "-o", "yaml"))
    assert "name: myresiliency" in as_yaml
    assert "retry: retryForever" in as_yaml

    table = ok(fusebox(server, "get", "specs")).splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "REVISION", "AGE", "DIGEST"]
    row = next(line.split() for line in table[1:] if line.split()[1] == "myresiliency")
    assert row[0] == "default"
    assert row[2] == "1"
    assert row[4] == stored["digest"][:12]

    assert ok(fusebox(server, "apply", "-f", spec)).splitlines() == [
        "resiliency.dapr.io/myresiliency unchanged (revision 1)"
    ]


def test_modified_spec_becomes_revision_2_and_rollback_restores_revision_1(
    server: str, tmp_path: Path
) -> None:
    original = write(tmp_path / "v1.yaml", seed_named("rollback-demo"))
    modified = write(
        tmp_path / "v2.yaml",
        seed_named("rollback-demo").replace("maxRequests: 1", "maxRequests: 2"),
    )
    ok(fusebox(server, "apply", "-f", original))
    assert ok(fusebox(server, "apply", "-f", modified)).splitlines() == [
        "resiliency.dapr.io/rollback-demo configured (revision 2)"
    ]

    history = json.loads(ok(fusebox(server, "history", "rollback-demo", "-o", "json")))
    assert [(r["revision"], r["action"]) for r in history["revisions"]] == [
        (1, "apply"),
        (2, "apply"),
    ]

    assert ok(fusebox(server, "rollback", "rollback-demo", "--to", "1")).splitlines() == [
        "resiliency.dapr.io/rollback-demo rolled back to revision 1 (revision 3)"
    ]
    current = json.loads(ok(fusebox(server, "get", "specs", "rollback-demo", "-o", "json")))
    assert current["revision"] == 3
    assert (
        current["document"]["spec"]["policies"]["circuitBreakers"]["simpleCB"]["maxRequests"] == 1
    )
    assert current["digest"] == history["revisions"][0]["digest"]

    table = ok(fusebox(server, "history", "rollback-demo")).splitlines()
    assert [line.split()[:2] for line in table] == [
        ["REVISION", "ACTION"],
        ["1", "apply"],
        ["2", "apply"],
        ["3", "rollback"],
    ]
    assert table[3].endswith("rolled back to revision 1")


def test_delete_removes_the_spec_and_keeps_its_history(server: str, tmp_path: Path) -> None:
    ok(fusebox(server, "apply", "-f", write(tmp_path / "r.yaml", seed_named("delete-demo"))))

    assert ok(fusebox(server, "delete", "spec", "delete-demo")).splitlines() == [
        "resiliency.dapr.io/delete-demo deleted (revision 2)"
    ]

    gone = fusebox(server, "get", "specs", "delete-demo")
    assert gone.returncode == 1
    assert "delete-demo" in gone.stderr
    assert "not found" in gone.stderr
    history = json.loads(ok(fusebox(server, "history", "delete-demo", "-o", "json")))
    assert [r["action"] for r in history["revisions"]] == ["apply", "delete"]
    again = fusebox(server, "delete", "spec", "delete-demo")
    assert again.returncode == 1


def test_resolve_gives_checkout_the_seed_policies_and_other_apps_nothing(
    server: str, tmp_path: Path
) -> None:
    spec = write(tmp_path / "r.yaml", seed_named("myresiliency", namespace="resolve-demo"))
    ok(fusebox(server, "apply", "-f", spec))

    table = ok(fusebox(server, "resolve", "--app-id", "checkout", "-n", "resolve-demo"))
    header, *rows = table.split("\n\n")[0].splitlines()  # built-in retries follow a blank line
    assert header.split()[:3] == ["KIND", "TARGET", "DIRECTION"]
    assert len(rows) == 1
    assert rows[0].split()[:2] == ["app", "order-processor"]
    assert "retryForever (constant" in rows[0]
    assert "simpleCB (consecutiveFailures >= 5" in rows[0]
    assert rows[0].rstrip().endswith("resolve-demo/myresiliency")

    # The server and the offline resolver print the same thing.
    online = ok(
        fusebox(server, "resolve", "--app-id", "checkout", "-n", "resolve-demo", "-o", "json")
    )
    offline = ok(
        fusebox(
            server,
            "resolve",
            "--app-id",
            "checkout",
            "-n",
            "resolve-demo",
            "-o",
            "json",
            "-f",
            spec,
        )
    )
    assert json.loads(online) == json.loads(offline)
    assert json.loads(online)["targets"][0]["retry"]["maxRetries"] == -1

    other = ok(fusebox(server, "resolve", "--app-id", "order-processor", "-n", "resolve-demo"))
    assert 'no policies apply to app "order-processor" in namespace "resolve-demo"' in other


def test_invalid_spec_is_rejected_with_the_field_path_and_nothing_is_stored(
    server: str, tmp_path: Path
) -> None:
    bad = write(
        tmp_path / "broken.yaml",
        seed_named("broken-demo").replace("maxInterval: 5s", "maxInterval: 5 parsecs"),
    )

    for extra in ([], ["--dry-run"]):
        rejected = fusebox(server, "apply", "-f", bad, *extra)
        assert rejected.returncode == 1
        assert rejected.stdout == ""
        problems = [line for line in rejected.stderr.splitlines() if line.startswith(f"{bad}:")]
        assert len(problems) == 1
        assert "spec.policies.retries.retryForever.maxInterval" in problems[0]
        assert "nothing was stored" in rejected.stderr

    assert fusebox(server, "get", "specs", "broken-demo").returncode == 1


def test_expected_revision_conflicts_exit_1_and_change_nothing(server: str, tmp_path: Path) -> None:
    first = write(tmp_path / "v1.yaml", seed_named("cas-demo"))
    second = write(tmp_path / "v2.yaml", seed_named("cas-demo").replace("5s", "7s"))
    ok(fusebox(server, "apply", "-f", first, "--expected-revision", "0"))

    conflict = fusebox(server, "apply", "-f", second, "--expected-revision", "0")
    assert conflict.returncode == 1
    assert "error: " in conflict.stderr
    assert "revision conflict" in conflict.stderr
    assert (
        json.loads(ok(fusebox(server, "get", "specs", "cas-demo", "-o", "json")))["revision"] == 1
    )

    stale_delete = fusebox(server, "delete", "spec", "cas-demo", "--expected-revision", "5")
    assert stale_delete.returncode == 1

    assert ok(fusebox(server, "apply", "-f", second, "--expected-revision", "1")).splitlines() == [
        "resiliency.dapr.io/cas-demo configured (revision 2)"
    ]


def test_dry_run_validates_on_the_server_and_stores_nothing(server: str, tmp_path: Path) -> None:
    spec = write(tmp_path / "r.yaml", seed_named("dry-demo"))
    assert ok(fusebox(server, "apply", "-f", spec, "--dry-run")).splitlines() == [
        "resiliency.dapr.io/dry-demo created (dry run)"
    ]
    assert fusebox(server, "get", "specs", "dry-demo").returncode == 1


def test_directory_and_stdin_apply_with_components_skipped(server: str, tmp_path: Path) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    write(resources / "resiliency.yaml", seed_named("from-dir", namespace="dir-demo"))
    write(resources / "statestore.yaml", COMPONENT)

    applied = fusebox(server, "apply", "-f", str(resources))
    assert ok(applied).splitlines() == ["resiliency.dapr.io/dir-demo/from-dir created (revision 1)"]
    assert "statestore.yaml" in applied.stderr

    piped = fusebox(
        server, "apply", "-f", "-", stdin=seed_named("from-stdin", namespace="dir-demo")
    )
    assert ok(piped).splitlines() == ["resiliency.dapr.io/dir-demo/from-stdin created (revision 1)"]

    listed = json.loads(ok(fusebox(server, "get", "specs", "-n", "dir-demo", "-o", "json")))
    assert [s["name"] for s in listed["specs"]] == ["from-dir", "from-stdin"]
    everywhere = json.loads(ok(fusebox(server, "get", "specs", "-A", "-o", "json")))
    assert {"dir-demo", "default"} <= {s["namespace"] for s in everywhere["specs"]}


def test_server_down_exits_3_with_how_to_start_one() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = fusebox(address, "get", "specs")
    assert result.returncode == 3
    assert f"cannot reach the Fusebox server at {address}" in result.stderr
    assert "fusebox serve" in result.stderr
