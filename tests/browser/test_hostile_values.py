"""Hostile names and reasons render as text: a breaker whose target and method, an
override reason and a spec's content hold markup, quotes and unicode show up
verbatim, no element is made from them and no script runs.

Spec names cannot carry markup: the server accepts only DNS names there, and
says so (checked below), so the spec's hostile part is its target, which shows
in its YAML, its diff and in resolve.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
import pytest

from fusebox.v1 import breaker_pb2
from tests.browser.fleet import APP, TARGET, ConsoleServer, app_key, spec_yaml, token
from tests.support.browser import ConsolePage

pytestmark = pytest.mark.e2e

SPEC = "hostile-names"
HOSTILE_TARGET = "<img src=x onerror=\"window.__pwned='target'\"> 'single' ünïcødé 🚦"
HOSTILE_METHOD = "<script>window.__pwned='method'</script>\"/&amp;"
HOSTILE_REASON = "</td><img src=x onerror=window.__pwned='reason'> \"quoted\" 'single' ✓ 中文"
NAME = f"{HOSTILE_TARGET}:{HOSTILE_METHOD}"

#: Elements the page itself has: anything else would have come from the data.
COUNT_ELEMENTS = """
return {
  scripts: document.querySelectorAll('script').length,
  imgs: document.querySelectorAll('img').length,
  pwned: typeof window.__pwned === 'undefined' ? null : String(window.__pwned),
  onerror: document.querySelectorAll('[onerror]').length,
};
"""


def assert_nothing_ran(page: ConsolePage) -> None:
    found = page.driver.execute_script(COUNT_ELEMENTS)
    assert found == {"scripts": 1, "imgs": 0, "pwned": None, "onerror": 0}, found


def test_hostile_names_and_reasons_render_as_text(
    console: ConsoleServer, new_page: Callable[[str], ConsolePage],
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        console.apply(spec_yaml("<script>alert(1)</script>"))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata.name" in (refused.value.details() or "")

    console.apply(spec_yaml(SPEC, targets=(TARGET, HOSTILE_TARGET)))
    key = app_key(SPEC, HOSTILE_TARGET, HOSTILE_METHOD)
    console.set_override(key, breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN, HOSTILE_REASON, 3600)

    page = new_page(console.url)
    page.open("#/breakers", token=token("operator"))
    page.wait(lambda: NAME in page.rows(), what="the hostile breaker on the board")
    row = page.rows()[NAME]
    assert row["state"] == "forced open"
    assert HOSTILE_REASON in row["override"]
    assert_nothing_ran(page)

    # Its page, reached by its link (the key is encoded into the route).
    link = next(r for r in page.testids("breaker-row")
                if r.get_attribute("data-breaker") == NAME).find_element("css selector", "a")
    assert link.text == NAME
    link.click()
    page.wait(lambda: page.text("breaker-title") == NAME, what="the hostile breaker's page")
    page.wait(lambda: any(HOSTILE_REASON in r.text for r in page.testids("transition-row")),
              what="the override's reason among the transitions")
    page.testid("action-reason").send_keys(HOSTILE_REASON)
    page.testid("action-force-closed").click()
    page.wait(lambda: page.testid("confirm-dialog").get_attribute("open") is not None,
              what="the confirmation")
    dialog = page.driver.execute_script(
        "return document.getElementById('confirm-dialog').textContent")
    assert NAME in dialog and HOSTILE_REASON in dialog
    page.testid("confirm-ok").click()
    page.wait(lambda: page.text("action-result").startswith("Done"), what="forced closed")
    assert NAME in page.text("action-result")
    assert_nothing_ran(page)

    # What the calling app gets lists the hostile target, as text.
    page.go("#/resolve")
    page.testid("resolve-app").send_keys(APP)
    page.testid("resolve-submit").click()
    page.wait(lambda: HOSTILE_TARGET in page.text("resolve-result"), what="resolve")

    # The spec's YAML and a diff that removes the hostile target.
    console.apply(spec_yaml(SPEC, targets=(TARGET,)))
    page.go(f"#/specs/default/{SPEC}")
    page.wait(lambda: len(page.testids("revision-row")) == 2, what="two revisions")
    page.testids("revision-row")[1].find_element("css selector", "button").click()
    # The YAML as applied: the target in its double-quoted YAML form.
    as_applied = json.dumps(HOSTILE_TARGET, ensure_ascii=False)
    page.wait(lambda: as_applied in page.text("spec-yaml"), what="revision 1's YAML")
    removed = page.driver.execute_script(
        "return [...document.querySelectorAll('[data-testid=spec-diff] .diff-del')]"
        ".map((e) => e.textContent)")
    assert any(as_applied in line for line in removed), removed

    page.go("#/audit")
    page.wait(lambda: any(HOSTILE_REASON in r.text for r in page.testids("audit-row")),
              what="the reason in the audit log")
    assert any(NAME in r.text for r in page.testids("audit-row"))

    assert_nothing_ran(page)
