// One breaker's page (#/breakers/<namespace>/<spec>/<kind>/<target>[/<method>]):
// its state, recent transitions, policy, failing instances, override, and the
// operator's actions, each confirmed first.

import { ApiError, rpc } from "./api.js";
import { badge, countdownText, countsText, failingText, overrideText } from "./board.js";
import { confirmAction } from "./confirm.js";
import { h, fill, setText, field } from "./dom.js";
import {
  causeWord, describeBreakerPolicy, displayName, durationJson, formatTime, keyPath, kindWord,
  num, parseKeyPath, parseTtl, shownState, stateWord,
} from "./format.js";
import { store } from "./store.js";

const ACTIONS = [
  { testid: "action-force-open", label: "Force open", override: "BREAKER_OVERRIDE_FORCE_OPEN",
    verb: "Force open", explain: "Every agent rejects calls through this breaker until the override is cleared or expires." },
  { testid: "action-force-closed", label: "Force closed", override: "BREAKER_OVERRIDE_FORCE_CLOSED",
    verb: "Force closed", explain: "Every agent lets calls through, whatever the failures, until the override is cleared or expires." },
  { testid: "action-disable", label: "Disable", override: "BREAKER_OVERRIDE_DISABLED",
    verb: "Disable", explain: "No breaker at all: every call passes and nothing is counted." },
  { testid: "action-clear", label: "Clear override", override: "BREAKER_OVERRIDE_UNSPECIFIED",
    verb: "Clear the override on", explain: "The state machine decides again.", noTtl: true },
  { testid: "action-reset", label: "Reset", reset: true,
    verb: "Reset", explain: "Back to closed with zeroed counts; clears any override.", noTtl: true },
];

export function canActOnBreakers(role) {
  return role === "" || role === "admin" || role === "operator";
}

function definitionList(rows) {
  return h("dl", { class: "facts" }, rows.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

export function mountBreaker(root, path, { role }) {
  const key = parseKeyPath(path);
  if (!key) {
    fill(root, h("h1", {}, "No such breaker"),
      h("p", {}, "This address does not name a breaker. "), h("a", { href: "#/breakers" }, "Back to the board"));
    return () => {};
  }
  const id = keyPath(key);
  const title = h("h1", { testid: "breaker-title" }, `${key.method ? `${key.target}:${key.method}` : key.target}`);
  const stateBox = h("div", { class: "breaker-state" });
  const facts = h("div", { class: "breaker-facts" });
  const transitionsBody = h("tbody");
  const policy = h("div", { testid: "breaker-policy", class: "policy" });
  const failing = h("div", { class: "failing" });
  const result = h("p", { testid: "action-result", class: "action-result", role: "status", "aria-live": "polite" });
  const reason = h("input", { testid: "action-reason", type: "text", maxlength: 500, autocomplete: "off" });
  const ttl = h("input", { testid: "action-ttl", type: "text", placeholder: "e.g. 10m", inputmode: "text", autocomplete: "off" });
  const allowed = canActOnBreakers(role);
  const buttons = ACTIONS.map((action) => {
    const button = h("button", {
      type: "button", testid: action.testid,
      class: action.override === "BREAKER_OVERRIDE_FORCE_OPEN" || action.reset ? "danger" : "",
      disabled: !allowed,
      title: allowed ? action.explain : "Your role can only look: operator or admin tokens act on breakers.",
    }, action.label);
    button.addEventListener("click", () => act(action));
    return button;
  });
  let current = null;
  let disposed = false;

  fill(
    root,
    h("p", { class: "crumbs" }, h("a", { href: "#/breakers" }, "Breakers"), " / ",
      `${key.spec} · ${kindWord(key.kind)}`),
    h("div", { class: "view-head" }, title, stateBox),
    h("p", { class: "full-key" }, "Key ", h("code", {}, [key.namespace, key.spec, kindWord(key.kind), key.target, key.method].filter(Boolean).join("/"))),
    facts,
    h("div", { class: "columns" },
      h("section", { class: "panel", "aria-labelledby": "actions-h" },
        h("h2", { id: "actions-h" }, "Actions"),
        allowed ? null : h("p", { class: "notice" }, `Signed in as ${role}: you can look, not act.`),
        h("div", { class: "action-inputs" },
          field("Reason", reason, "Recorded in the audit log and shown to other operators."),
          field("TTL", ttl, "How long an override lasts: 90s, 10m, 1h. Empty: until cleared.")),
        h("div", { class: "action-buttons" }, buttons),
        result),
      h("section", { class: "panel", "aria-labelledby": "policy-h" },
        h("h2", { id: "policy-h" }, "Policy in force"), policy,
        h("h3", {}, "Failing instances"), failing)),
    h("section", { class: "panel", "aria-labelledby": "transitions-h" },
      h("h2", { id: "transitions-h" }, "Recent transitions"),
      h("div", { class: "table-wrap" },
        h("table", { class: "grid" },
          h("caption", { class: "visually-hidden" }, "Recent transitions, newest first"),
          h("thead", {}, h("tr", {}, ["Time", "From", "To", "Cause", "Instance", "Generation", "Detail"]
            .map((t) => h("th", { scope: "col" }, t)))),
          transitionsBody))),
  );

  function render(breaker) {
    current = breaker;
    setText(title, displayName(breaker));
    const state = shownState(breaker);
    fill(stateBox, badge(state, true));
    renderClock();
    const transitions = [...(breaker.recentTransitions ?? [])].reverse();
    fill(transitionsBody, ...transitions.map((t) => h("tr", { testid: "transition-row" },
      h("td", { class: "time" }, formatTime(t.time, { withDate: true })),
      h("td", {}, badge(stateWord(t.fromState))),
      h("td", {}, badge(stateWord(t.toState))),
      h("td", { "data-field": "cause" }, causeWord(t.cause)),
      h("td", { "data-field": "instance" }, t.instanceId || "—"),
      h("td", { class: "num" }, String(num(t.generation))),
      h("td", {}, t.detail || ""))));
    if (!transitions.length) {
      transitionsBody.append(h("tr", { class: "empty" }, h("td", { colspan: 7 }, "No transitions recorded yet.")));
    }
    fill(policy, breaker.policy ? definitionList(describeBreakerPolicy(breaker.policy))
      : h("p", {}, "No policy recorded for this breaker."));
    const names = breaker.failingInstances ?? [];
    fill(failing, names.length
      ? h("ul", { class: "instances" }, names.map((n) => h("li", {}, h("code", {}, n))))
      : h("p", { class: "muted" }, num(breaker.failingInstanceCount)
        ? failingText(breaker)
        : "None reported in the current window (listed for quorum policies)."));
  }

  function renderClock() {
    if (!current) return;
    const countdown = countdownText(current);
    const c = current.counts ?? {};
    fill(facts, definitionList([
      ["Half-open in", countdown.text],
      ["Counts", countsText(current)],
      ["Successes", `${num(c.totalSuccesses)} (${num(c.consecutiveSuccesses)} in a row)`],
      ["Generation", String(num(current.generation))],
      ["Probe leases", String(num(current.activeLeases))],
      ["Override", overrideText(current)],
    ]));
  }

  async function load() {
    try {
      const reply = await rpc("BreakerService", "GetBreaker", { key });
      if (disposed) return;
      render(reply.breaker);
    } catch (error) {
      if (disposed) return;
      if (error instanceof ApiError && error.status === 404) {
        fill(stateBox);
        fill(facts, h("p", { class: "notice" }, error.message));
      } else {
        fill(facts, h("p", { class: "error" }, `Could not load the breaker: ${error.message}`));
      }
    }
  }

  async function act(action) {
    let seconds = 0;
    try {
      seconds = action.noTtl ? 0 : parseTtl(ttl.value);
    } catch (error) {
      setText(result, error.message);
      result.dataset.outcome = "error";
      ttl.focus();
      return;
    }
    if (action.override && action.override !== "BREAKER_OVERRIDE_UNSPECIFIED" && !reason.value.trim()) {
      setText(result, "Say why: a reason is required to set an override (it goes to the audit log).");
      result.dataset.outcome = "error";
      reason.focus();
      return;
    }
    const name = current ? displayName(current) : title.textContent;
    const details = [["Breaker", name], ["Reason", reason.value || "(none)"]];
    if (!action.noTtl) details.push(["For", seconds ? `${seconds}s` : "until cleared"]);
    const ok = await confirmAction({
      title: `${action.verb} ${name}?`, text: action.explain, details, confirmLabel: action.label,
    });
    if (!ok) {
      setText(result, "Cancelled.");
      result.dataset.outcome = "cancelled";
      return;
    }
    setText(result, "Sending…");
    result.dataset.outcome = "pending";
    try {
      let reply;
      if (action.reset) {
        reply = await rpc("BreakerService", "ResetBreaker", { key, reason: reason.value });
      } else {
        const request = { key, override: action.override, reason: reason.value };
        if (seconds) request.ttl = durationJson(seconds);
        reply = await rpc("BreakerService", "SetOverride", request);
      }
      if (reply.breaker) {
        store.upsert(reply.breaker);
        render({ ...reply.breaker, recentTransitions: reply.breaker.recentTransitions ?? current?.recentTransitions });
      }
      setText(result, `Done: ${name} is now ${reply.breaker ? shownState(reply.breaker) : "updated"}.`);
      result.dataset.outcome = "ok";
      load();
    } catch (error) {
      setText(result, `Refused: ${error.message}${error.code ? ` (${error.code})` : ""}`);
      result.dataset.outcome = "error";
    }
  }

  // Live: a transition of this breaker reloads it (with its transitions); the
  // store's own copy updates the clock-like facts in between.
  let reloadTimer = 0;
  const unsubscribe = store.subscribe((ids, transitions) => {
    if (!ids.has(id)) return;
    if (transitions.some(([tid]) => tid === id)) {
      clearTimeout(reloadTimer);
      reloadTimer = setTimeout(load, 100);
    } else if (current && store.get(id)) {
      const fresh = store.get(id);
      if (num(fresh.generation) >= num(current.generation)) {
        current = { ...fresh, recentTransitions: current.recentTransitions, policy: fresh.policy ?? current.policy };
        fill(stateBox, badge(shownState(current), true));
        renderClock();
      }
    }
  });
  const ticker = setInterval(renderClock, 1000);
  load();
  return () => {
    disposed = true;
    unsubscribe();
    clearInterval(ticker);
    clearTimeout(reloadTimer);
  };
}
