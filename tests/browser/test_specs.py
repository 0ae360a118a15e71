"""Specs in the page: the revisions, a revision's YAML, the diff between two, and
rollback, which an admin may do and an operator may not."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.browser.fleet import ConsoleServer, spec_yaml, token
from tests.support.browser import ConsolePage

pytestmark = pytest.mark.e2e

SPEC = "checkout-resiliency"
SPEC_PAGE = f"#/specs/default/{SPEC}"


def diff_lines(page: ConsolePage, kind: str) -> list[str]:
    lines: list[str] = page.driver.execute_script(
        "return [...document.querySelectorAll('[data-testid=spec-diff] .' + arguments[0])]"
        ".map((e) => e.textContent)", kind)
    return lines


def test_revisions_diff_and_rollback_by_role(
    console: ConsoleServer, new_page: Callable[[str], ConsolePage],
) -> None:
    console.apply(spec_yaml(SPEC, threshold=3, timeout="5s"))
    console.apply(spec_yaml(SPEC, threshold=5, timeout="10s", targets=("upstream", "payments")))

    page = new_page(console.url)
    page.open("#/specs", token=token("operator"))
    page.wait(lambda: len(page.testids("spec-row")) == 1, what="the spec listed")
    row = page.testid("spec-row")
    assert row.get_attribute("data-spec") == SPEC and "2" in row.text
    row.find_element("css selector", "a").click()
    page.wait(lambda: len(page.testids("revision-row")) == 2, what="two revisions")
    assert [r.get_attribute("data-revision") for r in page.testids("revision-row")] == ["2", "1"]
    assert "consecutiveFailures >= 5" in page.text("spec-yaml")

    # By default the diff shows what the newest revision changed.
    added, removed = diff_lines(page, "diff-add"), diff_lines(page, "diff-del")
    assert any("consecutiveFailures >= 5" in line for line in added), added
    assert any('"payments"' in line for line in added), added
    assert any("consecutiveFailures >= 3" in line for line in removed), removed
    assert not any("apiVersion" in line for line in added + removed)
    page.driver.execute_script("arguments[0].scrollIntoView({block: 'end'})",
                               page.testid("spec-diff"))
    page.screenshot("spec-diff")

    # An operator may not roll back: the buttons say so and the server refuses.
    assert not any(b.is_enabled() for b in page.testids("rollback"))
    status, body = page.fetch_json("fusebox.v1.SpecService/RollbackSpec", {
        "namespace": "default", "name": SPEC, "toRevision": "1"}, token("operator"))
    assert status == 403 and body["code"] == "permission_denied", (status, body)

    # An admin may, after confirming.
    page.testid("signout").click()
    page.sign_in(token("admin"))
    page.go("#/specs")
    page.go(SPEC_PAGE)
    page.wait(lambda: len(page.testids("revision-row")) == 2, what="the revisions as admin")
    back = next(b for b in page.testids("rollback") if b.get_attribute("data-revision") == "1")
    assert back.is_enabled()
    back.click()
    page.confirm()
    page.wait(lambda: page.text("action-result").startswith("Done"), what="the rollback")
    page.wait(lambda: len(page.testids("revision-row")) == 3, what="the rollback's revision")
    newest = page.testids("revision-row")[0]
    assert newest.get_attribute("data-revision") == "3" and "restores 1" in newest.text
    # The diff now shows the rollback undoing revision 2.
    assert any("consecutiveFailures >= 3" in line for line in diff_lines(page, "diff-add"))

    with grpc.insecure_channel(console.address) as channel:
        current = spec_pb2_grpc.SpecServiceStub(channel).GetSpec(
            spec_pb2.GetSpecRequest(namespace="default", name=SPEC),
            metadata=console.metadata("viewer"), timeout=10).spec
    assert current.revision == 3 and "consecutiveFailures >= 3" in current.yaml


BUDGETS_SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: orders-budgets
spec:
  policies:
    rateLimits:
      ordersLimit: {limit: 200, period: 1s, burst: 50, whenExceeded: wait, maxWait: 250ms}
    retryBudgets:
      ordersRetries: {ratio: 0.2, window: 10s, minRetriesPerSecond: 10}
    retries:
      threeTimes: {policy: constant, duration: 100ms, maxRetries: 3}
  targets:
    apps:
      order-processor:
        retry: threeTimes
        rateLimit: ordersLimit
        retryBudget: ordersRetries
"""


def test_resolve_shows_fleet_budgets_in_columns_of_their_own(
    console: ConsoleServer, new_page: Callable[[str], ConsolePage],
) -> None:
    console.apply(BUDGETS_SPEC)
    page = new_page(console.url)
    page.open("#/resolve", token=token("viewer"))
    page.testid("resolve-app").send_keys("checkout")
    page.testid("resolve-submit").click()
    page.wait(lambda: "order-processor" in page.text("resolve-result"),
              what="the resolved policies")
    headers = page.driver.execute_script(
        "return [...document.querySelectorAll('[data-testid=resolve-result] thead th')]"
        ".map((e) => e.textContent)")
    assert headers[-3:] == ["Rate limit", "Retry budget", "Spec"], headers
    assert page.text("resolve-rate-limit") == (
        "ordersLimit: 200 per 1s, burst 50, per app, wait up to 250ms")
    assert page.text("resolve-retry-budget") == (
        "ordersRetries: 20% of first attempts over 10s, floor 10/s")
