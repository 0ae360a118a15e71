// Every action asks first, in the page's one <dialog> (keyboard: Escape cancels,
// focus starts on Cancel so Enter never confirms by accident).

import { fill, h } from "./dom.js";

let pending = null;

function dialogParts() {
  return {
    dialog: document.getElementById("confirm-dialog"),
    title: document.getElementById("confirm-title"),
    text: document.getElementById("confirm-text"),
    details: document.getElementById("confirm-details"),
    ok: document.getElementById("confirm-ok"),
    cancel: document.getElementById("confirm-cancel"),
  };
}

export function installConfirm() {
  const { dialog, ok, cancel } = dialogParts();
  const settle = (answer) => {
    const resolve = pending;
    pending = null;
    if (dialog.open) dialog.close();
    resolve?.(answer);
  };
  ok.addEventListener("click", () => settle(true));
  cancel.addEventListener("click", () => settle(false));
  dialog.addEventListener("close", () => settle(false));
  dialog.addEventListener("cancel", () => settle(false));
}

/** Show the dialog; resolves true when confirmed. */
export function confirmAction({ title, text, details = [], confirmLabel = "Confirm" }) {
  const parts = dialogParts();
  pending?.(false);
  parts.title.textContent = title;
  parts.text.textContent = text;
  fill(parts.details, details.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  parts.ok.textContent = confirmLabel;
  const opener = document.activeElement;
  return new Promise((resolve) => {
    pending = (answer) => {
      resolve(answer);
      if (opener instanceof HTMLElement) opener.focus();
    };
    parts.dialog.showModal();
    parts.cancel.focus();
  });
}
