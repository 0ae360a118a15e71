// The live feed: WatchBreakers as server-sent events, read with fetch and a
// ReadableStream because EventSource cannot send an Authorization header.
// Reconnects with backoff (0.5 s doubling to 5 s) and resumes with Last-Event-ID.

import { errorOf, send, signalUnauthenticated, watchRequest } from "./api.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;

/** Split an SSE byte stream into {id, event, data} records (the WHATWG parsing rules). */
export class SseParser {
  constructor(onRecord) {
    this.onRecord = onRecord;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = undefined;
  }

  push(text) {
    this.buffer += text;
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      // A lone "\r" at the end may be the first half of "\r\n": wait for more.
      if (!found || (found[0] === "\r" && found.index === this.buffer.length - 1)) break;
      this.line(this.buffer.slice(start, found.index));
      start = found.index + found[0].length;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      if (this.data.length || this.event) {
        this.onRecord({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: keepalive
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") this.data.push(value);
    else if (name === "id" && !value.includes("\0")) this.id = value;
  }
}

/**
 * new LiveFeed({params, onEvent(name, data), onStatus(status)}).start()
 * status: "connecting" (never connected yet), "live", "reconnecting".
 */
export class LiveFeed {
  constructor({ params = {}, onEvent, onStatus }) {
    this.params = params;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastEventId = "";
    this.stopped = true;
    this.controller = null;
    this.everLive = false;
    this.wake = null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.run();
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
    this.wake?.();
  }

  /** Drop the resume position (after a sign-in as someone else, say). */
  forget() {
    this.lastEventId = "";
  }

  status(value) {
    this.onStatus(value);
  }

  async run() {
    let delay = FIRST_DELAY_MS;
    while (!this.stopped) {
      this.status(this.everLive ? "reconnecting" : "connecting");
      try {
        const { url, init } = watchRequest(this.params, this.lastEventId);
        this.controller = new AbortController();
        const response = await send(url, { ...init, signal: this.controller.signal });
        if (response.status === 401) {
          const error = await errorOf(response);
          signalUnauthenticated(error.message);
          this.stopped = true;
          return;
        }
        if (!response.ok || !response.body) {
          const error = await errorOf(response);
          throw error;
        }
        this.everLive = true;
        this.status("live");
        delay = FIRST_DELAY_MS;
        await this.read(response.body);
      } catch (error) {
        if (this.stopped) return;
        console.warn("live feed:", error.message ?? error);
      }
      if (this.stopped) return;
      this.status("reconnecting");
      // Backoff with a little jitter so a restarted server is not hit by every page at once.
      const wait = delay * (0.8 + Math.random() * 0.4);
      delay = Math.min(delay * 2, MAX_DELAY_MS);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }

  async read(body) {
    const parser = new SseParser((record) => this.record(record));
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        parser.push(value);
      }
    } finally {
      reader.releaseLock?.();
    }
  }

  record({ id, event, data }) {
    if (id !== undefined) this.lastEventId = id;
    let payload = {};
    if (data) {
      try {
        payload = JSON.parse(data);
      } catch {
        console.warn("live feed: unreadable event data", event);
        return;
      }
    }
    if (event === "error") {
      if (payload.code === "unauthenticated") {
        signalUnauthenticated(payload.message);
        this.stop();
      }
      console.warn("live feed: server error", payload.code, payload.message);
    }
    this.onEvent(event, payload);
  }
}
