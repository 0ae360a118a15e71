// Building DOM from data without ever parsing it as HTML: every value becomes a
// text node or an attribute value, so a breaker named "<script>" is just text.

/**
 * h("td", {class: "x", testid: "y", onclick: fn}, "text", childNode)
 * Attribute values go through setAttribute; listeners must be functions.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`${name} must be a function`);
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "testid") {
      el.dataset.testid = value;
    } else if (name === "text") {
      el.textContent = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Set text only when it changed (cheap in-place updates of live rows). */
export function setText(el, text) {
  const value = String(text);
  if (el.textContent !== value) el.textContent = value;
}

export function setAttr(el, name, value) {
  const text = String(value);
  if (el.getAttribute(name) !== text) el.setAttribute(name, text);
}

/** A labelled form control: <div class=field><label for=id>..</label>control</div>. */
export function field(label, control, hint) {
  if (!control.id) control.id = `f-${Math.random().toString(36).slice(2, 9)}`;
  const children = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = `${control.id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    children.push(h("span", { class: "hint", id: hintId }, hint));
  }
  return h("div", { class: "field" }, ...children);
}

export function select(options, attrs = {}) {
  const el = h("select", attrs);
  for (const [value, label] of options) el.append(h("option", { value }, label));
  return el;
}

/** A table with a caption and column headers; returns {table, tbody}. */
export function table(caption, headers, attrs = {}) {
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "grid", ...attrs },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headers.map((text) => h("th", { scope: "col" }, text)))),
    tbody,
  );
  return { table, tbody };
}

export function emptyRow(tbody, columns, text) {
  tbody.append(h("tr", { class: "empty" }, h("td", { colspan: columns }, text)));
}
