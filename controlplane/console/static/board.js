// The breakers board (#/breakers): one row per breaker, updated in place. A
// burst of live events touches only the rows that changed, once per frame; the
// countdowns tick once a second on the rows that have one.

import { serverClock } from "./api.js";
import { h, fill, setAttr, setText, field, select } from "./dom.js";
import {
  STATE_WORDS, activeOverride, displayName, formatSeconds, formatTime, keyPath, kindWord, num,
  parseTime, shownState, stateSlug,
} from "./format.js";
import { store } from "./store.js";

const filters = { app: "", spec: "", state: "" }; // kept while the page is open

/** Seconds until `text` (an RFC 3339 time) by the server's clock; null when absent. */
function secondsUntil(text) {
  const at = parseTime(text);
  if (Number.isNaN(at)) return null;
  return (at - serverClock.now()) / 1000;
}

export function countdownText(breaker) {
  if (activeOverride(breaker)) return { text: "—", seconds: null };
  const state = shownState(breaker);
  if (state === "half-open") {
    const leases = num(breaker.activeLeases);
    return { text: leases ? `probing (${leases})` : "probing", seconds: null };
  }
  if (state !== "open") return { text: "—", seconds: null };
  const left = secondsUntil(breaker.openUntil);
  if (left === null) return { text: "open", seconds: null };
  if (left <= 0) return { text: "due now", seconds: 0 };
  const seconds = Math.ceil(left);
  return { text: formatSeconds(seconds), seconds };
}

export function countsText(breaker) {
  const c = breaker.counts ?? {};
  return `${num(c.requests)} req · ${num(c.totalFailures)} fail · ${num(c.consecutiveFailures)} in a row`;
}

export function overrideText(breaker) {
  const info = breaker.override;
  const word = activeOverride(breaker);
  if (!word) return "—";
  const parts = [word];
  if (info.reason) parts.push(`“${info.reason}”`);
  const left = secondsUntil(info.expireTime);
  if (left === null) parts.push("until cleared");
  else parts.push(left > 0 ? `expires in ${formatSeconds(Math.ceil(left))}` : "expiring");
  if (info.setBy) parts.push(`by ${info.setBy}`);
  return parts.join(" · ");
}

export function failingText(breaker) {
  const names = breaker.failingInstances ?? [];
  const count = num(breaker.failingInstanceCount);
  if (!count && !names.length) return "—";
  const shown = names.slice(0, 3).join(", ");
  const more = Math.max(count, names.length) - Math.min(names.length, 3);
  const reporting = num(breaker.reportingInstanceCount);
  return `${count || names.length}${reporting ? ` of ${reporting}` : ""}: ${shown}${more > 0 ? ` +${more}` : ""}`;
}

/** A state badge: the colour comes from the class, the meaning from the word. */
export function badge(word, large = false) {
  return h("span", { class: `badge state-${stateSlug(word)}${large ? " badge-large" : ""}` }, word);
}

class Row {
  constructor(id) {
    this.id = id;
    this.link = h("a", { href: `#/breakers/${id}` });
    this.sub = h("span", { class: "sub" });
    this.badge = h("span", { class: "badge" });
    this.cells = {
      state: h("td", { "data-field": "state" }, this.badge),
      countdown: h("td", { "data-field": "countdown", class: "num" }),
      counts: h("td", { "data-field": "counts" }),
      generation: h("td", { "data-field": "generation", class: "num" }),
      override: h("td", { "data-field": "override" }),
      failing: h("td", { "data-field": "failing" }),
    };
    this.tr = h(
      "tr",
      { testid: "breaker-row" },
      h("th", { scope: "row", class: "breaker-name" }, this.link, this.sub),
      Object.values(this.cells),
    );
    this.sortKey = "";
  }

  update(breaker) {
    const name = displayName(breaker);
    const key = breaker.key;
    setAttr(this.tr, "data-breaker", name);
    setAttr(this.tr, "data-key", this.id);
    setText(this.link, name);
    setText(this.sub, `${key.spec ?? ""} · ${kindWord(key.kind)}${key.namespace ? ` · ${key.namespace}` : ""}`);
    const state = shownState(breaker);
    setText(this.badge, state);
    setAttr(this.badge, "class", `badge state-${stateSlug(state)}`);
    setAttr(this.tr, "data-state", stateSlug(state));
    setText(this.cells.counts, countsText(breaker));
    setText(this.cells.generation, num(breaker.generation));
    setText(this.cells.failing, failingText(breaker));
    this.sortKey = `${name}\u0000${key.spec ?? ""}\u0000${key.namespace ?? ""}`;
    this.tick(breaker);
  }

  /** The parts that move with the clock. */
  tick(breaker) {
    const countdown = countdownText(breaker);
    setText(this.cells.countdown, countdown.text);
    if (countdown.seconds === null) this.cells.countdown.removeAttribute("data-seconds");
    else setAttr(this.cells.countdown, "data-seconds", countdown.seconds);
    const until = parseTime(breaker.openUntil);
    if (!Number.isNaN(until) && countdown.seconds !== null) {
      setAttr(this.cells.countdown, "title", `half-open at ${formatTime(breaker.openUntil)}`);
    } else {
      this.cells.countdown.removeAttribute("title");
    }
    setText(this.cells.override, overrideText(breaker));
  }

  matches(breaker) {
    const key = breaker.key;
    return (!filters.app || key.target === filters.app)
      && (!filters.spec || `${key.namespace}/${key.spec}` === filters.spec)
      && (!filters.state || shownState(breaker) === filters.state);
  }
}

/** Keep a <select>'s options equal to `values` (sorted), preserving the choice. */
function syncOptions(el, values, allLabel) {
  const wanted = ["", ...values];
  const have = Array.from(el.options, (o) => o.value);
  if (have.length === wanted.length && have.every((v, i) => v === wanted[i])) return;
  const chosen = el.value;
  fill(el, ...wanted.map((v) => h("option", { value: v }, v || allLabel)));
  el.value = wanted.includes(chosen) ? chosen : "";
}

export function mountBoard(root) {
  const rows = new Map();
  const summary = h("p", { class: "summary", "aria-label": "Breakers by state" });
  const status = h("p", { class: "board-status", role: "status" });
  const tbody = h("tbody");
  const appFilter = h("select", { testid: "filter-app", id: "filter-app" });
  const specFilter = h("select", { testid: "filter-spec", id: "filter-spec" });
  const stateFilter = select([["", "any state"], ...STATE_WORDS.map((w) => [w, w])], {
    testid: "filter-state", id: "filter-state",
  });
  const targetOverrides = h("section", { class: "target-overrides", hidden: true });
  stateFilter.value = filters.state;
  const table = h(
    "table",
    { class: "grid board" },
    h("caption", { class: "visually-hidden" }, "Circuit breakers"),
    h("thead", {}, h("tr", {}, [
      "Breaker", "State", "Half-open in", "Counts", "Gen", "Override", "Failing instances",
    ].map((text) => h("th", { scope: "col" }, text)))),
    tbody,
  );
  fill(
    root,
    h("div", { class: "view-head" },
      h("h1", {}, "Breakers"),
      summary),
    h("div", { class: "filters", role: "search", "aria-label": "Filter breakers" },
      field("Target app", appFilter),
      field("Spec", specFilter),
      field("State", stateFilter)),
    targetOverrides,
    status,
    h("div", { class: "table-wrap" }, table),
  );

  function applyFilters() {
    let shown = 0;
    for (const [id, row] of rows) {
      const breaker = store.get(id);
      const visible = breaker ? row.matches(breaker) : false;
      row.tr.hidden = !visible;
      if (visible) shown += 1;
    }
    updateStatus(shown);
  }

  function updateStatus(shown = null) {
    const total = rows.size;
    if (shown === null) shown = Array.from(rows.values()).filter((r) => !r.tr.hidden).length;
    let text;
    if (!store.synced && total === 0) text = "Loading breakers…";
    else if (total === 0) text = "No breakers yet: they appear once an agent reports calls through one, or an operator overrides one ahead of use.";
    else if (shown === total) text = `${total} breaker${total === 1 ? "" : "s"}`;
    else text = `${shown} of ${total} breakers match the filters`;
    setText(status, text);
  }

  function updateSummary() {
    const counts = new Map(STATE_WORDS.map((w) => [w, 0]));
    for (const breaker of store.breakers.values()) {
      const word = shownState(breaker);
      counts.set(word, (counts.get(word) ?? 0) + 1);
    }
    const order = ["open", "forced open", "half-open", "disabled", "forced closed", "closed"];
    fill(summary, ...order.filter((w) => counts.get(w) || ["open", "half-open", "closed"].includes(w))
      .map((w) => h("span", { class: `chip state-${stateSlug(w)}`, "data-state": w },
        h("strong", {}, String(counts.get(w))), ` ${w}`)));
  }

  function updateFilterOptions() {
    const apps = new Set();
    const specs = new Set();
    for (const breaker of store.breakers.values()) {
      apps.add(breaker.key.target ?? "");
      specs.add(`${breaker.key.namespace}/${breaker.key.spec}`);
    }
    syncOptions(appFilter, [...apps].sort(), "all apps");
    syncOptions(specFilter, [...specs].sort(), "all specs");
    appFilter.value = filters.app && apps.has(filters.app) ? filters.app : appFilter.value;
    specFilter.value = filters.spec && specs.has(filters.spec) ? filters.spec : specFilter.value;
  }

  function updateTargetOverrides() {
    const list = store.targetOverrides;
    targetOverrides.hidden = list.length === 0;
    if (!list.length) return;
    fill(targetOverrides,
      h("h2", {}, "Overrides on whole targets"),
      h("ul", {}, list.map((t) => h("li", {},
        badge(activeOverride(t)), " ",
        `${t.target?.target ?? ""} (spec ${t.target?.spec ?? ""}, every method)`,
        t.override?.reason ? ` — “${t.override.reason}”` : "",
        t.override?.setBy ? ` by ${t.override.setBy}` : ""))));
  }

  function render(ids) {
    let added = false;
    const all = ids === null;
    for (const id of all ? store.breakers.keys() : ids) {
      if (id === "") continue;
      const breaker = store.get(id);
      let row = rows.get(id);
      if (!breaker) {
        if (row) {
          row.tr.remove();
          rows.delete(id);
        }
        continue;
      }
      if (!row) {
        row = new Row(id);
        rows.set(id, row);
        added = true;
      }
      row.update(breaker);
      row.tr.hidden = !row.matches(breaker);
    }
    if (added) {
      // New rows: put every row in name order (moving existing nodes, not rebuilding them).
      const ordered = Array.from(rows.values()).sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
      const fragment = document.createDocumentFragment();
      for (const row of ordered) fragment.append(row.tr);
      tbody.append(fragment);
      updateFilterOptions();
    }
    updateSummary();
    updateTargetOverrides();
    updateStatus();
  }

  for (const [el, name] of [[appFilter, "app"], [specFilter, "spec"], [stateFilter, "state"]]) {
    el.addEventListener("change", () => {
      filters[name] = el.value;
      applyFilters();
    });
  }

  render(null);
  updateFilterOptions();
  appFilter.value = filters.app;
  specFilter.value = filters.spec;
  applyFilters();
  const unsubscribe = store.subscribe((ids) => render(ids));
  const ticker = setInterval(() => {
    for (const [id, row] of rows) {
      const breaker = store.get(id);
      if (breaker && (breaker.openUntil || breaker.override?.expireTime)) row.tick(breaker);
    }
  }, 1000);
  return () => {
    unsubscribe();
    clearInterval(ticker);
  };
}
