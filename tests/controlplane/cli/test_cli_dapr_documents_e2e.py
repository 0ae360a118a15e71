"""Documents Dapr accepts, through the CLI as subprocesses against a real `fusebox serve`:
each validates, applies and resolves as daprd would; warnings carry file:line:col and
field path and leave the exit status 0."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ServerProcess, child_env
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

CLI_DEADLINE_SECONDS = 60.0
HEADER = "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ServerProcess(tmp_path_factory.mktemp("fusebox-serve")) as process:
        yield process.address


def fusebox(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusebox.controlplane.cli", "--server", address, *args],
        capture_output=True,
        text=True,
        timeout=CLI_DEADLINE_SECONDS,
        cwd=REPOSITORY,
        env=child_env(),
        check=False,
    )


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def resolved(address: str, namespace: str, app_id: str) -> dict[str, Any]:
    result = fusebox(address, "resolve", "--app-id", app_id, "-n", namespace, "-o", "json")
    assert result.returncode == 0, result.stderr
    targets = json.loads(result.stdout).get("targets", [])
    return {t.get("name", ""): t for t in targets}


def document(name: str, namespace: str, body: str, scopes: str = "") -> str:
    text = HEADER + f"metadata:\n  name: {name}\n  namespace: {namespace}\n"
    return text + (f"scopes: [{scopes}]\n" if scopes else "") + body


# ---- the five kinds of documents daprd loads ---------------------------------------------------


def test_an_app_id_listed_twice_is_a_warning_with_file_line_and_path(
    server: str, tmp_path: Path
) -> None:
    spec = write(tmp_path / "twice.yaml", document("twice", "scopes-demo", """\
spec:
  policies: {timeouts: {fast: 1s}}
  targets: {apps: {order-processor: {timeout: fast}}}
""", scopes="checkout, checkout"))
    expected = (
        f"{spec}:6:20: scopes[1]: warning: app-id 'checkout' is listed twice (first at "
        "scopes[0]); the repetition changes nothing"
    )

    validated = fusebox(server, "validate", "-f", spec)
    assert validated.returncode == 0
    assert validated.stdout.splitlines() == [expected, "resiliency.dapr.io/scopes-demo/twice valid"]

    applied = fusebox(server, "apply", "-f", spec)
    assert applied.returncode == 0
    assert applied.stdout == "resiliency.dapr.io/scopes-demo/twice created (revision 1)\n"
    assert applied.stderr.splitlines() == [expected]

    assert resolved(server, "scopes-demo", "checkout")["order-processor"]["timeout"]["name"] == (
        "fast"
    )
    assert resolved(server, "scopes-demo", "other") == {}


def test_a_status_code_list_with_an_empty_entry_is_accepted(server: str, tmp_path: Path) -> None:
    spec = write(tmp_path / "codes.yaml", document("codes", "codes-demo", """\
spec:
  policies:
    retries:
      r: {matching: {httpStatusCodes: "500,", gRPCStatusCodes: "14,"}}
  targets: {apps: {order-processor: {retry: r}}}
"""))
    for command in ("validate", "apply"):
        result = fusebox(server, command, "-f", spec)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr

    retry = resolved(server, "codes-demo", "any")["order-processor"]["retry"]
    assert retry["httpStatusCodes"] == [{"first": 500, "last": 500}]
    assert retry["grpcStatusCodes"] == [{"first": 14, "last": 14}]


def test_a_builtin_retry_no_document_defines_resolves_to_daprs(
    server: str, tmp_path: Path
) -> None:
    spec = write(tmp_path / "builtin.yaml", document("builtin", "builtin-demo", """\
spec:
  targets:
    apps: {order-processor: {retry: DaprBuiltInServiceRetries}}
    actors: {Cart: {retry: DaprBuiltInActorRetries}}
"""))
    for command in ("validate", "apply"):
        result = fusebox(server, command, "-f", spec)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr

    targets = resolved(server, "builtin-demo", "any")
    for target, builtin in (("order-processor", "DaprBuiltInServiceRetries"),
                            ("Cart", "DaprBuiltInActorRetries")):
        retry = targets[target]["retry"]
        assert (retry["name"], retry["maxRetries"], retry["duration"]) == (builtin, 3, "1s")


def test_a_cache_size_of_0_takes_daprs_default(server: str, tmp_path: Path) -> None:
    spec = write(tmp_path / "zero.yaml", document("zero", "cache-demo", """\
spec:
  policies: {circuitBreakers: {cb: {}}}
  targets:
    apps: {order-processor: {circuitBreaker: cb, circuitBreakerCacheSize: 0}}
    actors: {Cart: {circuitBreaker: cb, circuitBreakerScope: id, circuitBreakerCacheSize: 0}}
"""))
    for command in ("validate", "apply"):
        result = fusebox(server, command, "-f", spec)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr

    targets = resolved(server, "cache-demo", "any")
    assert targets["order-processor"]["circuitBreakerCacheSize"] == 100
    assert targets["Cart"]["circuitBreakerCacheSize"] == 5000


TARGETS = """\
spec:
  targets:
    apps:
      order-processor: {retry: retryForever, circuitBreaker: simpleCB}
"""
POLICIES = """\
spec:
  policies:
    retries: {retryForever: {duration: 5s, maxRetries: -1}}
    circuitBreakers: {simpleCB: {maxRequests: 1, timeout: 5s, trip: consecutiveFailures >= 5}}
"""


def test_a_policy_of_another_document_is_found_when_applied_together_or_stored(
    server: str, tmp_path: Path
) -> None:
    targets = write(tmp_path / "targets.yaml", document("targets", "cross-demo", TARGETS))
    policies = write(tmp_path / "policies.yaml", document("policies", "cross-demo", POLICIES))

    together = fusebox(server, "validate", "-f", targets, "-f", policies)
    assert (together.returncode, together.stderr) == (0, "")

    # Offline, one file alone: validate says what it could not check, and exits 0.
    alone = fusebox(server, "validate", "-f", targets)
    assert alone.returncode == 0
    warnings = [line for line in alone.stdout.splitlines() if ": warning: " in line]
    assert [w.split(": ", 2)[:2] for w in warnings] == [
        [f"{targets}:9:32", "spec.targets.apps.order-processor.retry"],
        [f"{targets}:9:62", "spec.targets.apps.order-processor.circuitBreaker"],
    ]
    assert "must be defined in another Resiliency document of namespace 'cross-demo'" in (
        warnings[0]
    )

    # The server knows what is stored: defined nowhere is an error, nothing is stored.
    refused = fusebox(server, "apply", "-f", targets)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert f"{targets}:9:32: spec.targets.apps.order-processor.retry: retry policy " in (
        refused.stderr
    )
    assert "nothing was stored" in refused.stderr

    applied = fusebox(server, "apply", "-f", targets, "-f", policies)
    assert applied.returncode == 0, applied.stderr
    assert sorted(applied.stdout.splitlines()) == [
        "resiliency.dapr.io/cross-demo/policies created (revision 1)",
        "resiliency.dapr.io/cross-demo/targets created (revision 1)",
    ]
    target = resolved(server, "cross-demo", "checkout")["order-processor"]
    assert (target["retry"]["name"], target["circuitBreaker"]["name"]) == (
        "retryForever", "simpleCB"
    )

    # Now stored: the targets file alone applies too.
    changed = write(tmp_path / "targets.yaml", document(
        "targets", "cross-demo", TARGETS.replace(", circuitBreaker: simpleCB", "")
    ))
    reapplied = fusebox(server, "apply", "-f", changed)
    assert (reapplied.returncode, reapplied.stderr) == (0, "")
    assert reapplied.stdout == "resiliency.dapr.io/cross-demo/targets configured (revision 2)\n"


def test_a_target_taken_over_by_a_later_spec_warns_and_exits_0(
    server: str, tmp_path: Path
) -> None:
    body = POLICIES + """\
  targets:
    apps:
      order-processor: {retry: retryForever}
"""
    early = write(tmp_path / "a.yaml", document("a-early", "takeover-demo", body))
    late = write(tmp_path / "b.yaml", document("b-late", "takeover-demo", body.replace(
        "retry: retryForever}", "circuitBreaker: simpleCB}"
    )))
    assert fusebox(server, "apply", "-f", late).returncode == 0

    applied = fusebox(server, "apply", "-f", early)
    assert applied.returncode == 0
    [warning] = applied.stderr.splitlines()
    assert warning.startswith(
        f"{early}:12:7: spec.targets.apps.order-processor: warning: app target "
        "'order-processor' is also bound by spec takeover-demo/b-late (stored); for the apps "
        "they share, spec takeover-demo/b-late (stored) takes it over"
    )
    target = resolved(server, "takeover-demo", "checkout")["order-processor"]
    assert target["specName"] == "b-late" and "retry" not in target
