// The words the page uses for the wire's values (proto3 JSON: enums by name,
// 64-bit integers as strings, Timestamps as RFC 3339, Durations as "1.5s";
// fields at their default value may be absent).

const KINDS = { TARGET_KIND_APP: "app", TARGET_KIND_ACTOR: "actor", TARGET_KIND_COMPONENT: "component",
  1: "app", 2: "actor", 3: "component" };
const KIND_ENUM = { app: "TARGET_KIND_APP", actor: "TARGET_KIND_ACTOR", component: "TARGET_KIND_COMPONENT" };
const STATES = { BREAKER_STATE_CLOSED: "closed", BREAKER_STATE_OPEN: "open",
  BREAKER_STATE_HALF_OPEN: "half-open", 1: "closed", 2: "open", 3: "half-open" };
const OVERRIDES = { BREAKER_OVERRIDE_FORCE_OPEN: "forced open", BREAKER_OVERRIDE_FORCE_CLOSED: "forced closed",
  BREAKER_OVERRIDE_DISABLED: "disabled", 1: "forced open", 2: "forced closed", 3: "disabled" };
const CAUSES = { TRANSITION_CAUSE_TRIP: "trip", TRANSITION_CAUSE_TIMEOUT: "open timeout elapsed",
  TRANSITION_CAUSE_PROBE_SUCCESS: "probes succeeded", TRANSITION_CAUSE_PROBE_FAILURE: "probe failed",
  TRANSITION_CAUSE_OVERRIDE: "operator override", TRANSITION_CAUSE_RESET: "reset",
  TRANSITION_CAUSE_POLICY_CHANGE: "policy change", 1: "trip", 2: "open timeout elapsed",
  3: "probes succeeded", 4: "probe failed", 5: "operator override", 6: "reset", 7: "policy change" };
const AUDIT_ACTIONS = { AUDIT_ACTION_SPEC_APPLY: "spec apply", AUDIT_ACTION_SPEC_DELETE: "spec delete",
  AUDIT_ACTION_SPEC_ROLLBACK: "spec rollback", AUDIT_ACTION_BREAKER_OVERRIDE: "breaker override",
  AUDIT_ACTION_BREAKER_RESET: "breaker reset", 1: "spec apply", 2: "spec delete", 3: "spec rollback",
  4: "breaker override", 5: "breaker reset" };
const REVISION_ACTIONS = { REVISION_ACTION_APPLY: "apply", REVISION_ACTION_DELETE: "delete",
  REVISION_ACTION_ROLLBACK: "rollback", 1: "apply", 2: "delete", 3: "rollback" };

export const STATE_WORDS = ["closed", "open", "half-open", "forced open", "forced closed", "disabled"];

export const kindWord = (kind) => KINDS[kind] ?? "app";
export const stateWord = (state) => STATES[state] ?? "unknown";
export const overrideWord = (override) => OVERRIDES[override] ?? "";
export const causeWord = (cause) => CAUSES[cause] ?? "unknown";
export const auditActionWord = (action) => AUDIT_ACTIONS[action] ?? "unknown";
export const revisionActionWord = (action) => REVISION_ACTIONS[action] ?? "apply";

/** The override in force, as a word ("" for none). */
export function activeOverride(breaker) {
  return overrideWord(breaker.override?.override);
}

/** What the board says a breaker is: an override wins over the state machine's state. */
export function shownState(breaker) {
  return activeOverride(breaker) || stateWord(breaker.state);
}

/** CSS-friendly slug of a shown state: "forced open" -> "forced-open". */
export const stateSlug = (word) => word.replace(/\s+/g, "-");

export const num = (value) => Number(value ?? 0);

// --- breaker identity -----------------------------------------------------------------

/** A breaker key as one path: namespace/spec/kind/target[/method], each part URI-encoded. */
export function keyPath(key) {
  const parts = [key.namespace ?? "", key.spec ?? "", kindWord(key.kind), key.target ?? ""];
  if (key.method) parts.push(key.method);
  return parts.map(encodeURIComponent).join("/");
}

export function parseKeyPath(path) {
  const parts = path.split("/").map((p) => decodeURIComponent(p));
  if (parts.length < 4 || parts.length > 5 || !KIND_ENUM[parts[2]]) return null;
  const [namespace, spec, kind, target, method = ""] = parts;
  return { namespace, spec, kind: KIND_ENUM[kind], target, method };
}

export function displayName(breaker) {
  const key = breaker.key ?? {};
  if (breaker.displayName) return breaker.displayName;
  return key.method ? `${key.target}:${key.method}` : key.target ?? "";
}

// --- time -------------------------------------------------------------------------------

/** RFC 3339 -> epoch milliseconds (NaN when absent). Trims nanoseconds to milliseconds. */
export function parseTime(text) {
  if (!text) return NaN;
  return Date.parse(String(text).replace(/(\.\d{3})\d+/, "$1"));
}

/** "1.500s" -> 1.5 (seconds); absent -> 0. */
export function parseDuration(text) {
  if (!text) return 0;
  const match = /^(-?\d+(?:\.\d+)?)s$/.exec(String(text));
  return match ? Number(match[1]) : 0;
}

/** Seconds -> "450ms", "12s", "1m 05s", "2h 03m". */
export function formatSeconds(seconds) {
  if (seconds < 1 && seconds > 0) return `${Math.round(seconds * 1000)}ms`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  const h = Math.floor(s / 3600);
  if (h < 48) return `${h}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export const formatDuration = (text) => (text ? formatSeconds(parseDuration(text)) : "—");

const clockFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});
const pad = (n) => String(n).padStart(2, "0");
const dateFormat = {
  // 2026-03-01 14:05:09, local time: compact, sortable, unambiguous in every locale.
  format: (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clockFormat.format(d)}`,
};

/** Local wall time of an RFC 3339 timestamp; "—" when absent. */
export function formatTime(text, { withDate = false } = {}) {
  const ms = parseTime(text);
  if (Number.isNaN(ms)) return "—";
  return (withDate ? dateFormat : clockFormat).format(new Date(ms));
}

/**
 * Read a TTL typed by a person: Go-style durations ("90s", "10m", "1h30m", "500ms")
 * or a bare number of seconds. "" is 0 (until cleared). Throws on anything else.
 */
export function parseTtl(text) {
  const value = text.trim();
  if (!value) return 0;
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  let seconds = 0;
  let rest = value;
  const part = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)/;
  while (rest) {
    const match = part.exec(rest);
    if (!match) throw new Error(`cannot read the TTL "${value}": use e.g. 90s, 10m, 1h30m`);
    seconds += Number(match[1]) * units[match[2]];
    rest = rest.slice(match[0].length);
  }
  return seconds;
}

/** Seconds -> a proto3 JSON Duration. */
export const durationJson = (seconds) => `${Number(seconds.toFixed(3))}s`;

// --- policies ------------------------------------------------------------------------------

export function describeBreakerPolicy(policy) {
  if (!policy) return [];
  const rows = [
    ["name", policy.name || "—"],
    ["trip", policy.trip || "—"],
    ["timeout (open for)", formatDuration(policy.timeout)],
    ["interval", policy.interval ? formatDuration(policy.interval) : "counts never reset while closed"],
    ["maxRequests (half-open probes)", String(policy.maxRequests ?? 1)],
  ];
  const quorum = policy.quorum;
  if (quorum && (quorum.minInstances || quorum.minShare)) {
    const rules = [];
    if (quorum.minInstances) rules.push(`at least ${quorum.minInstances} instances`);
    if (quorum.minShare) rules.push(`at least ${Math.round(quorum.minShare * 100)}% of reporting instances`);
    rows.push(["quorum", rules.join(" and ")]);
  }
  return rows;
}

function ranges(list) {
  return (list ?? []).map((r) => (r.first === r.last ? `${r.first}` : `${r.first}-${r.last}`)).join(",");
}

export function describeRetry(retry) {
  if (!retry) return "—";
  const max = retry.maxRetries === undefined ? 0 : Number(retry.maxRetries);
  const parts = [retry.name || "retry"];
  if (retry.backoff === "BACKOFF_KIND_EXPONENTIAL" || retry.backoff === 2) {
    parts.push(`exponential up to ${formatDuration(retry.maxInterval)}`);
  } else {
    parts.push(`every ${formatDuration(retry.duration)}`);
  }
  parts.push(max < 0 ? "forever" : `${max} retries`);
  const http = ranges(retry.httpStatusCodes);
  if (http) parts.push(`on HTTP ${http}`);
  const grpc = ranges(retry.grpcStatusCodes);
  if (grpc) parts.push(`on gRPC ${grpc}`);
  if (retry.honorRetryAfter) parts.push("honours Retry-After");
  return parts.join(", ");
}

/** A fleet rate limit: "ordersLimit: 200 per 1s, burst 50, per app, reject". */
export function describeRateLimit(limit) {
  if (!limit) return "—";
  const scope = limit.scope === "RATE_LIMIT_SCOPE_FLEET" ? "fleet-wide" : "per app";
  const exceeded = limit.whenExceeded === "WHEN_EXCEEDED_WAIT"
    ? `wait up to ${formatDuration(limit.maxWait)}` : "reject";
  return `${limit.name}: ${limit.limit ?? 0} per ${formatDuration(limit.period)}, ` +
    `burst ${limit.burst ?? 0}, ${scope}, ${exceeded}`;
}

/** A fleet retry budget: "ordersRetries: 20% of first attempts over 10s, floor 10/s". */
export function describeRetryBudget(budget) {
  if (!budget) return "—";
  const ratio = Math.round(Number(budget.ratio ?? 0) * 100);
  return `${budget.name}: ${ratio}% of first attempts over ${formatDuration(budget.window)}, ` +
    `floor ${Number(budget.minRetriesPerSecond ?? 0)}/s`;
}

export function describeFallback(fallback) {
  if (!fallback) return "—";
  if (fallback.function) return `${fallback.name}: function ${fallback.function}`;
  if (fallback.response) return `${fallback.name}: static response ${fallback.response.status ?? 200}`;
  return fallback.name || "fallback";
}
