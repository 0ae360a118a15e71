// The console's entry point: theme, sign-in, the live feed and the routes.

import { getSession, token } from "./api.js";
import { mountBoard } from "./board.js";
import { mountBreaker } from "./breaker.js";
import { installConfirm } from "./confirm.js";
import { h, fill, setText } from "./dom.js";
import { LiveFeed } from "./feed.js";
import { mountAudit, mountResolve } from "./lookups.js";
import { mountSpec, mountSpecs } from "./specs.js";
import { store } from "./store.js";

const $ = (id) => document.getElementById(id);
const root = document.documentElement;

// --- theme and density: remembered in localStorage, theme defaults to the system's ---

const THEME_KEY = "fusebox.console.theme";
const DENSITY_KEY = "fusebox.console.density";
const systemDark = window.matchMedia("(prefers-color-scheme: dark)");

function applyTheme(theme) {
  root.dataset.theme = theme;
  const button = $("theme-toggle");
  const dark = theme === "dark";
  button.setAttribute("aria-pressed", String(dark));
  button.textContent = dark ? "Light theme" : "Dark theme";
  button.title = `Switch to the ${dark ? "light" : "dark"} theme`;
}

function applyDensity(density) {
  root.dataset.density = density;
  const button = $("density-toggle");
  const large = density === "large";
  button.setAttribute("aria-pressed", String(large));
  button.textContent = large ? "Compact" : "Large text";
  button.title = large ? "Compact rows for a laptop" : "Large text for a wall screen";
}

function setupAppearance() {
  const storedTheme = localStorage.getItem(THEME_KEY);
  applyTheme(storedTheme ?? (systemDark.matches ? "dark" : "light"));
  systemDark.addEventListener("change", (event) => {
    if (!localStorage.getItem(THEME_KEY)) applyTheme(event.matches ? "dark" : "light");
  });
  $("theme-toggle").addEventListener("click", () => {
    const next = root.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem(THEME_KEY, next);
    applyTheme(next);
  });
  applyDensity(localStorage.getItem(DENSITY_KEY) === "large" ? "large" : "compact");
  $("density-toggle").addEventListener("click", () => {
    const next = root.dataset.density === "large" ? "compact" : "large";
    localStorage.setItem(DENSITY_KEY, next);
    applyDensity(next);
  });
}

// --- session ------------------------------------------------------------------------

let session = null;
let unmount = () => {};
let feed = null;

function setLiveStatus(status) {
  const el = $("live-status");
  setText(el, status);
  el.dataset.status = status;
}

function showSignin(message = "") {
  session = null;
  unmount();
  unmount = () => {};
  feed?.stop();
  feed = null;
  store.stopRefresh();
  store.clear();
  $("view").hidden = true;
  $("loading").hidden = true;
  $("topnav").hidden = true;
  $("live-status").hidden = true;
  $("whoami").hidden = true;
  $("signout").hidden = true;
  setText($("namespace-label"), "");
  $("signin").hidden = false;
  setText($("signin-error"), message);
  $("signin-token").value = "";
  $("signin-token").focus();
}

function startSession(info) {
  session = {
    authRequired: Boolean(info.authRequired),
    name: info.name ?? "",
    role: info.role ?? "",
    namespace: info.namespace ?? "",
  };
  $("signin").hidden = true;
  $("loading").hidden = true;
  $("view").hidden = false;
  $("topnav").hidden = false;
  $("live-status").hidden = false;
  const who = $("whoami");
  who.hidden = false;
  fill(who, session.authRequired
    ? [h("span", { class: "who-name" }, session.name || "unnamed token"), " ",
      h("span", { class: `role role-${session.role || "none"}` }, session.role || "no role")]
    : [h("span", { class: "who-name" }, "no sign-in"), " ", h("span", { class: "role role-admin" }, "open server")]);
  who.title = session.authRequired
    ? `Signed in as ${session.name} (${session.role})`
    : "This server requires no token: every caller may do everything";
  $("signout").hidden = !session.authRequired;
  setText($("namespace-label"), session.namespace ? `namespace ${session.namespace}` : "all namespaces");
  const params = { namespace: session.namespace };
  feed = new LiveFeed({
    params,
    onEvent: (name, data) => store.onFeedEvent(name, data),
    onStatus: setLiveStatus,
  });
  store.startRefresh(params);
  feed.start();
  route();
}

async function signIn(event) {
  event.preventDefault();
  const value = $("signin-token").value.trim();
  if (!value) return;
  const button = event.submitter ?? null;
  if (button) button.disabled = true;
  try {
    const info = await getSession(value);
    token.set(value);
    startSession(info);
  } catch (error) {
    setText($("signin-error"), error.status === 401
      ? "The server does not know this token."
      : `Could not sign in: ${error.message}`);
  } finally {
    if (button) button.disabled = false;
  }
}

function signOut() {
  token.clear();
  showSignin("Signed out.");
}

async function boot() {
  try {
    const info = await getSession();
    startSession(info);
  } catch (error) {
    if (error.status === 401) {
      const had = token.get();
      token.clear();
      showSignin(had ? "Your token was refused; sign in again." : "");
    } else {
      $("loading").hidden = false;
      setText($("loading"), `The server did not answer: ${error.message}. Retrying…`);
      setTimeout(boot, 2000);
    }
  }
}

// --- routes -------------------------------------------------------------------------

function route() {
  if (!session) return;
  const hash = window.location.hash || "#/breakers";
  const path = hash.replace(/^#\/?/, "");
  const [section, ...rest] = path.split("/");
  unmount();
  const view = $("view");
  fill(view);
  const context = { role: session.role, namespace: session.namespace };
  let title = "Breakers";
  if (section === "breakers" && rest.length) {
    unmount = mountBreaker(view, rest.join("/"), context);
    title = "Breaker";
  } else if (section === "specs" && rest.length >= 2) {
    const [namespace, name] = rest.map(decodeURIComponent);
    unmount = mountSpec(view, namespace, name, context);
    title = `Spec ${name}`;
  } else if (section === "specs") {
    unmount = mountSpecs(view, context);
    title = "Specs";
  } else if (section === "resolve") {
    unmount = mountResolve(view, context);
    title = "Resolve";
  } else if (section === "audit") {
    unmount = mountAudit(view, context);
    title = "Audit log";
  } else {
    unmount = mountBoard(view, context);
  }
  document.title = `${title} · Fusebox console`;
  for (const link of document.querySelectorAll("#topnav a")) {
    if (link.dataset.route === (section || "breakers")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

setupAppearance();
installConfirm();
$("signin-form").addEventListener("submit", signIn);
$("signout").addEventListener("click", signOut);
window.addEventListener("hashchange", () => {
  route();
  $("main").focus({ preventScroll: true });
});
window.addEventListener("fusebox:unauthenticated", (event) => {
  if (!session) return;
  token.clear();
  showSignin(`The server refused the token: ${event.detail || "unauthenticated"}. Sign in again.`);
});
boot();
