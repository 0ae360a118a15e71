// The page's copy of the namespace's breakers, kept by the live feed (state
// changes) and a periodic ListBreakers (counts change without a transition).
// Views subscribe and get the keys that changed, at most once per frame.

import { rpc } from "./api.js";
import { keyPath, num } from "./format.js";

const REFRESH_MS = 5000;

/** Whether two copies of a breaker would render the same (what the board and page show). */
function sameShown(a, b) {
  const fields = (x) => [x.generation, x.state, x.openUntil, x.activeLeases, x.failingInstanceCount,
    x.reportingInstanceCount, (x.failingInstances ?? []).join("\u0000"),
    x.override?.override, x.override?.reason, x.override?.expireTime, x.override?.setBy,
    ...Object.values(x.counts ?? {})].join("\u0001");
  return fields(a) === fields(b);
}

export class BreakerStore {
  constructor() {
    this.breakers = new Map(); // key path -> Breaker (proto3 JSON)
    this.targetOverrides = [];
    this.listeners = new Set();
    this.pending = new Set();
    this.transitions = []; // [key path, transition] since the last flush
    this.frame = 0;
    this.stale = null; // keys a resync has not confirmed yet
    this.synced = false;
    this.params = {};
    this.timer = 0;
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(id) {
    return this.breakers.get(id);
  }

  /** Keep a breaker unless we already hold a newer generation of it. */
  upsert(breaker, { force = false } = {}) {
    if (!breaker?.key) return;
    const id = keyPath(breaker.key);
    const held = this.breakers.get(id);
    if (!force && held && num(held.generation) > num(breaker.generation)) return;
    this.breakers.set(id, breaker);
    // The periodic list repeats most breakers unchanged: those cost no DOM work.
    if (!held || !sameShown(held, breaker)) this.changed(id);
  }

  changed(id) {
    this.pending.add(id);
    if (!this.frame) {
      // Batch: a burst of events costs one DOM pass per frame. A hidden tab has no
      // frames; a timer keeps its copy moving so it is current when shown.
      this.frame = document.hidden
        ? setTimeout(() => this.flush(), 250)
        : requestAnimationFrame(() => this.flush());
    }
  }

  flush() {
    this.frame = 0;
    const ids = this.pending;
    const transitions = this.transitions;
    this.pending = new Set();
    this.transitions = [];
    for (const listener of this.listeners) {
      try {
        listener(ids, transitions);
      } catch (error) {
        console.error(error);
      }
    }
  }

  /** A live feed event (see feed.js). */
  onFeedEvent(name, data) {
    if (name === "breaker") {
      const breaker = data.breaker;
      if (!breaker?.key) return;
      const id = keyPath(breaker.key);
      if (data.snapshot) this.stale?.delete(id);
      // A transition's breaker comes without its recent transitions: keep ours.
      this.upsert(breaker, { force: Boolean(data.snapshot) });
      if (data.transition) {
        this.transitions.push([id, data.transition, data.revision]);
        this.changed(id);
      }
    } else if (name === "synced") {
      if (this.stale) {
        for (const id of this.stale) {
          this.breakers.delete(id);
          this.changed(id);
        }
      }
      this.stale = null;
      this.synced = true;
      this.changed("");
    } else if (name === "reset") {
      // The server could not resume: a fresh snapshot follows; whatever it does not
      // mention by its "synced" is gone.
      this.stale = new Set(this.breakers.keys());
    }
  }

  /** ListBreakers now, then every few seconds while the tab is visible. */
  startRefresh(params) {
    this.params = params;
    this.stopRefresh();
    const tick = async () => {
      if (!document.hidden) await this.refresh().catch(() => {});
      this.timer = setTimeout(tick, REFRESH_MS);
    };
    this.timer = setTimeout(tick, 0);
  }

  stopRefresh() {
    clearTimeout(this.timer);
    this.timer = 0;
  }

  async refresh() {
    const listed = await rpc("BreakerService", "ListBreakers", { namespace: this.params.namespace ?? "" });
    for (const breaker of listed.breakers ?? []) this.upsert(breaker);
    this.targetOverrides = listed.targetOverrides ?? [];
    this.changed("");
  }

  clear() {
    this.breakers.clear();
    this.targetOverrides = [];
    this.synced = false;
    this.stale = null;
    this.changed("");
  }
}

export const store = new BreakerStore();
