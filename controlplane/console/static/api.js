// Talking to the server: the bearer token (sessionStorage, never a cookie), the
// JSON gateway over the RPCs, and the server's clock as seen through Date headers.

const TOKEN_KEY = "fusebox.console.token";
const API = new URL("../api/", import.meta.url);

export const token = {
  get() {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  },
  set(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** An error the server answered with (Connect's {code, message}) or a network failure. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/**
 * The server's clock: a countdown must end when the *server* says the breaker
 * leaves open, whatever this machine's clock says. Each response's Date header
 * (whole seconds) bounds the offset: the server's time at the moment it
 * answered lies in [date, date + 1 s) and that moment lies between sending and
 * receiving. The bounds of several responses are intersected; when they stop
 * agreeing (either clock jumped) the estimate starts over.
 */
export const serverClock = {
  low: -Infinity,
  high: Infinity,
  offset: 0,
  observe(sentAt, receivedAt, dateHeader) {
    const date = Date.parse(dateHeader ?? "");
    if (Number.isNaN(date)) return;
    const low = date - receivedAt;
    const high = date + 1000 - sentAt;
    if (Math.max(low, this.low) > Math.min(high, this.high)) {
      this.low = low;
      this.high = high;
    } else {
      this.low = Math.max(low, this.low);
      this.high = Math.min(high, this.high);
    }
    const offset = (this.low + this.high) / 2;
    // Under a second of disagreement is within the header's resolution: ignore it.
    this.offset = Math.abs(offset) < 1000 ? 0 : offset;
  },
  now() {
    return Date.now() + this.offset;
  },
};

function headers(extra = {}) {
  const result = { ...extra };
  const bearer = token.get();
  if (bearer) result.Authorization = `Bearer ${bearer}`;
  return result;
}

/** Tell the page its credentials stopped working (it shows the sign-in form). */
function signalUnauthenticated(message) {
  window.dispatchEvent(new CustomEvent("fusebox:unauthenticated", { detail: message }));
}

async function errorOf(response) {
  let code = "";
  let message = "";
  try {
    const body = await response.json();
    code = body.code ?? "";
    message = body.message ?? "";
  } catch {
    message = `${response.status} ${response.statusText}`;
  }
  return new ApiError(response.status, code, message);
}

async function send(url, init) {
  const sentAt = Date.now();
  let response;
  try {
    response = await fetch(url, { cache: "no-store", credentials: "omit", ...init });
  } catch (error) {
    throw new ApiError(0, "unavailable", `the server did not answer (${error.message})`);
  }
  serverClock.observe(sentAt, Date.now(), response.headers.get("Date"));
  return response;
}

/**
 * GET /console/api/session with ``bearer`` (default: the stored token):
 * {authRequired, name, role, namespace}. Throws ApiError (401: wrong or no token).
 */
export async function getSession(bearer = token.get()) {
  const init = { headers: bearer ? { Authorization: `Bearer ${bearer}` } : {} };
  const response = await send(new URL("session", API), init);
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** One unary RPC: rpc("BreakerService", "GetBreaker", {key}) -> the response message. */
export async function rpc(service, method, request = {}) {
  const response = await send(new URL(`fusebox.v1.${service}/${method}`, API), {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
    body: JSON.stringify(request),
  });
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) signalUnauthenticated(error.message);
    throw error;
  }
  return response.json();
}

/** The live feed's URL and request headers. */
export function watchRequest(params, lastEventId) {
  const url = new URL("fusebox.v1.BreakerService/WatchBreakers", API);
  for (const [name, value] of Object.entries(params)) if (value) url.searchParams.set(name, value);
  const extra = { Accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  return { url, init: { headers: headers(extra), cache: "no-store", credentials: "omit" } };
}

export { send, errorOf, signalUnauthenticated };
