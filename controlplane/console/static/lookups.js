// Resolve ("what does app X get", #/resolve) and the audit log (#/audit).

import { rpc } from "./api.js";
import { h, fill, setText, field, emptyRow, select } from "./dom.js";
import {
  describeBreakerPolicy, describeFallback, describeRateLimit, describeRetry, describeRetryBudget,
  formatDuration, formatTime, kindWord, auditActionWord,
} from "./format.js";

const lastResolve = { app: "", namespace: "" };

function targetName(target) {
  if (target.isDefault) {
    return `default ${kindWord(target.kind)} policy${target.componentType ? ` (${target.componentType})` : ""}`;
  }
  const direction = target.direction === "COMPONENT_DIRECTION_INBOUND" ? " (inbound)"
    : target.direction === "COMPONENT_DIRECTION_OUTBOUND" ? " (outbound)" : "";
  return `${target.name}${direction}`;
}

function breakerSummary(policy) {
  if (!policy) return "—";
  return describeBreakerPolicy(policy).map(([k, v]) => `${k}: ${v}`).join("; ");
}

export function mountResolve(root, { namespace }) {
  const app = h("input", { testid: "resolve-app", type: "text", required: true, autocomplete: "off",
    spellcheck: "false", value: lastResolve.app });
  const ns = h("input", { testid: "resolve-namespace", type: "text", autocomplete: "off", spellcheck: "false",
    value: lastResolve.namespace || namespace || "", placeholder: "default" });
  const submit = h("button", { type: "submit", class: "primary", testid: "resolve-submit" }, "Resolve");
  const output = h("div", { testid: "resolve-result", class: "resolve-result", "aria-live": "polite" });
  const form = h("form", { class: "filters resolve-form" },
    field("App id", app), field("Namespace", ns), h("div", { class: "field field-button" }, submit));
  fill(root,
    h("div", { class: "view-head" }, h("h1", {}, "Resolve")),
    h("p", { class: "muted" }, "What one app gets from every stored spec: the policies its agents enforce."),
    form, output);

  let disposed = false;
  async function resolve() {
    lastResolve.app = app.value.trim();
    lastResolve.namespace = ns.value.trim();
    if (!lastResolve.app) return;
    fill(output, h("p", { class: "muted" }, "Resolving…"));
    try {
      const reply = await rpc("SpecService", "ResolvePolicies", {
        namespace: lastResolve.namespace, appId: lastResolve.app,
      });
      if (!disposed) render(reply.policies ?? {});
    } catch (error) {
      if (!disposed) fill(output, h("p", { class: "error" }, `Could not resolve: ${error.message}`));
    }
  }

  function render(policies) {
    const targets = policies.targets ?? [];
    // Fleet budgets (Fusebox's extension) get columns only when a target has one.
    const budgets = targets.some((t) => t.rateLimit || t.retryBudget);
    const tbody = h("tbody");
    for (const t of targets) {
      tbody.append(h("tr", { testid: "resolve-row" },
        h("th", { scope: "row" }, targetName(t)),
        h("td", {}, kindWord(t.kind)),
        h("td", {}, t.timeout ? `${t.timeout.name || "timeout"}: ${formatDuration(t.timeout.duration)}` : "—"),
        h("td", {}, describeRetry(t.retry)),
        h("td", {}, breakerSummary(t.circuitBreaker)),
        h("td", {}, describeFallback(t.fallback)),
        budgets ? h("td", { testid: "resolve-rate-limit" }, describeRateLimit(t.rateLimit)) : null,
        budgets ? h("td", { testid: "resolve-retry-budget" }, describeRetryBudget(t.retryBudget)) : null,
        h("td", {}, t.specName ? `${t.specNamespace || "default"}/${t.specName}` : "—")));
    }
    const columns = ["Target", "Kind", "Timeout", "Retry", "Circuit breaker", "Fallback",
      ...(budgets ? ["Rate limit", "Retry budget"] : []), "Spec"];
    if (!targets.length) emptyRow(tbody, columns.length, "No policy applies to this app: its calls pass through unguarded.");
    const builtins = Object.entries(policies.builtinRetries ?? {});
    fill(output,
      h("p", {}, `App `, h("strong", {}, policies.appId || lastResolve.app), ` in namespace `,
        h("strong", {}, policies.namespace || lastResolve.namespace || "default"),
        policies.digest ? ` · digest ${policies.digest.slice(0, 16)}` : ""),
      h("div", { class: "table-wrap" },
        h("table", { class: "grid" },
          h("caption", { class: "visually-hidden" }, "Resolved policies per target"),
          h("thead", {}, h("tr", {}, columns.map((x) => h("th", { scope: "col" }, x)))),
          tbody)),
      builtins.length ? h("details", { class: "builtins" },
        h("summary", {}, `Built-in retries (${builtins.length})`),
        h("ul", {}, builtins.map(([name, retry]) => h("li", {}, h("code", {}, name), ": ", describeRetry(retry))))) : null);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    resolve();
  });
  if (lastResolve.app) resolve();
  else app.focus();
  return () => {
    disposed = true;
  };
}

const AUDIT_FILTERS = [
  ["", "any action"],
  ["AUDIT_ACTION_BREAKER_OVERRIDE", "breaker override"],
  ["AUDIT_ACTION_BREAKER_RESET", "breaker reset"],
  ["AUDIT_ACTION_SPEC_APPLY", "spec apply"],
  ["AUDIT_ACTION_SPEC_ROLLBACK", "spec rollback"],
  ["AUDIT_ACTION_SPEC_DELETE", "spec delete"],
];

export function mountAudit(root) {
  const contains = h("input", { testid: "audit-filter", type: "search", autocomplete: "off", spellcheck: "false" });
  const action = select(AUDIT_FILTERS, { testid: "audit-action" });
  const refresh = h("button", { type: "submit" }, "Refresh");
  const status = h("p", { class: "board-status", role: "status" }, "Loading the audit log…");
  const tbody = h("tbody");
  const form = h("form", { class: "filters" },
    field("Target contains", contains), field("Action", action),
    h("div", { class: "field field-button" }, refresh));
  fill(root,
    h("div", { class: "view-head" }, h("h1", {}, "Audit log")),
    form, status,
    h("div", { class: "table-wrap" },
      h("table", { class: "grid" },
        h("caption", { class: "visually-hidden" }, "Audit events, newest first"),
        h("thead", {}, h("tr", {}, ["Time", "Actor", "Action", "Target", "Before", "After", "Detail"]
          .map((t) => h("th", { scope: "col" }, t)))),
        tbody)));

  let disposed = false;
  async function load() {
    const request = { limit: 200 };
    if (contains.value.trim()) request.targetContains = contains.value.trim();
    if (action.value) request.actions = [action.value];
    try {
      const reply = await rpc("AuditService", "ListAuditEvents", request);
      if (disposed) return;
      const events = reply.events ?? [];
      setText(status, events.length ? `${events.length} event${events.length === 1 ? "" : "s"}, newest first` : "No audit events match.");
      fill(tbody, events.map((e) => h("tr", { testid: "audit-row", "data-action": auditActionWord(e.action) },
        h("td", { class: "time" }, formatTime(e.time, { withDate: true })),
        h("td", { class: "actor" }, e.actor || "—"),
        h("td", {}, auditActionWord(e.action)),
        h("th", { scope: "row" }, e.target || e.targetKey || "—"),
        h("td", {}, e.previous || "—"),
        h("td", {}, e.current || "—"),
        h("td", { "data-field": "detail" }, e.detail || ""))));
      if (!events.length) emptyRow(tbody, 7, "Nothing recorded yet.");
    } catch (error) {
      if (!disposed) setText(status, `Could not read the audit log: ${error.message}`);
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  action.addEventListener("change", load);
  load();
  return () => {
    disposed = true;
  };
}
