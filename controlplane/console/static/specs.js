// Specs (#/specs, #/specs/<namespace>/<name>): the stored specs, a spec's
// revisions with their YAML, a diff between two revisions, and rollback.

import { rpc } from "./api.js";
import { confirmAction } from "./confirm.js";
import { diffLines, splitLines } from "./diff.js";
import { h, fill, setText, field, emptyRow } from "./dom.js";
import { formatTime, num, revisionActionWord } from "./format.js";

const specPath = (namespace, name) => `#/specs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
const shortDigest = (digest) => (digest ? digest.replace(/^sha256:/, "").slice(0, 12) : "—");

export function canRollback(role) {
  return role === "" || role === "admin";
}

export function mountSpecs(root) {
  const tbody = h("tbody");
  const status = h("p", { class: "board-status", role: "status" }, "Loading specs…");
  fill(root,
    h("div", { class: "view-head" }, h("h1", {}, "Specs")),
    status,
    h("div", { class: "table-wrap" },
      h("table", { class: "grid" },
        h("caption", { class: "visually-hidden" }, "Stored resiliency specs"),
        h("thead", {}, h("tr", {}, ["Name", "Namespace", "Revision", "Updated", "Digest"]
          .map((t) => h("th", { scope: "col" }, t)))),
        tbody)));
  let disposed = false;
  rpc("SpecService", "ListSpecs", { namespace: "" }).then((reply) => {
    if (disposed) return;
    const specs = reply.specs ?? [];
    setText(status, specs.length ? `${specs.length} spec${specs.length === 1 ? "" : "s"}` : "No specs stored yet: apply one with fusebox apply -f FILE.");
    for (const spec of specs) {
      const namespace = spec.namespace || "default";
      tbody.append(h("tr", { testid: "spec-row", "data-spec": spec.name, "data-namespace": namespace },
        h("th", { scope: "row" }, h("a", { href: specPath(namespace, spec.name) }, spec.name)),
        h("td", {}, namespace),
        h("td", { class: "num" }, String(num(spec.revision))),
        h("td", {}, formatTime(spec.updateTime, { withDate: true })),
        h("td", {}, h("code", {}, shortDigest(spec.digest)))));
    }
    if (!specs.length) emptyRow(tbody, 5, "No specs.");
  }).catch((error) => {
    if (!disposed) setText(status, `Could not list specs: ${error.message}`);
  });
  return () => {
    disposed = true;
  };
}

export function mountSpec(root, namespace, name, { role }) {
  const revisionsBody = h("tbody");
  const yaml = h("pre", { testid: "spec-yaml", class: "code", tabindex: 0, "aria-label": "Revision YAML" });
  const yamlTitle = h("h2", { id: "yaml-h" }, "YAML");
  const from = h("select", { testid: "diff-from" });
  const to = h("select", { testid: "diff-to" });
  const diff = h("pre", { testid: "spec-diff", class: "code diff", tabindex: 0, "aria-label": "Differences" });
  const diffSummary = h("p", { class: "muted", role: "status" });
  const result = h("p", { testid: "action-result", class: "action-result", role: "status", "aria-live": "polite" });
  const allowed = canRollback(role);
  let revisions = [];
  let disposed = false;

  fill(root,
    h("p", { class: "crumbs" }, h("a", { href: "#/specs" }, "Specs"), " / ", namespace),
    h("div", { class: "view-head" }, h("h1", { testid: "spec-title" }, name)),
    allowed ? null : h("p", { class: "notice" }, "Rolling back needs an admin token; you can look."),
    result,
    h("section", { class: "panel", "aria-labelledby": "revisions-h" },
      h("h2", { id: "revisions-h" }, "Revisions"),
      h("div", { class: "table-wrap" },
        h("table", { class: "grid" },
          h("caption", { class: "visually-hidden" }, "Revisions, newest first"),
          h("thead", {}, h("tr", {}, ["Revision", "Action", "Time", "Digest", "YAML", "Rollback"]
            .map((t) => h("th", { scope: "col" }, t)))),
          revisionsBody))),
    h("div", { class: "columns" },
      h("section", { class: "panel", "aria-labelledby": "yaml-h" }, yamlTitle, yaml),
      h("section", { class: "panel", "aria-labelledby": "diff-h" },
        h("h2", { id: "diff-h" }, "Diff"),
        h("div", { class: "filters" }, field("From revision", from), field("To revision", to)),
        diffSummary, diff)));

  function show(revision) {
    setText(yamlTitle, `YAML of revision ${num(revision.revision)}`);
    setText(yaml, revision.yaml || "(deleted: no content)");
  }

  function renderDiff() {
    const a = revisions.find((r) => String(num(r.revision)) === from.value);
    const b = revisions.find((r) => String(num(r.revision)) === to.value);
    if (!a || !b) {
      fill(diff);
      setText(diffSummary, "Pick two revisions.");
      return;
    }
    const ops = diffLines(splitLines(a.yaml), splitLines(b.yaml));
    const added = ops.filter((o) => o.op === "+").length;
    const removed = ops.filter((o) => o.op === "-").length;
    setText(diffSummary, added || removed
      ? `${added} line${added === 1 ? "" : "s"} added, ${removed} removed`
      : "No differences.");
    fill(diff, ops.map(({ op, text }) => h("span", {
      class: `diff-line ${op === "+" ? "diff-add" : op === "-" ? "diff-del" : "diff-same"}`,
    }, h("span", { class: "diff-mark", "aria-hidden": "true" }, op), op === "+" ? h("ins", {}, text) : op === "-" ? h("del", {}, text) : text)));
  }

  async function rollback(revision) {
    const target = num(revision.revision);
    const ok = await confirmAction({
      title: `Roll ${name} back to revision ${target}?`,
      text: "The content of that revision is applied again as a new revision; agents receive it at once.",
      details: [["Spec", `${namespace}/${name}`], ["Restores", `revision ${target} (${shortDigest(revision.digest)})`]],
      confirmLabel: "Roll back",
    });
    if (!ok) {
      setText(result, "Cancelled.");
      result.dataset.outcome = "cancelled";
      return;
    }
    try {
      const reply = await rpc("SpecService", "RollbackSpec", { namespace, name, toRevision: String(target) });
      const applied = reply.spec ?? {};
      setText(result, applied.changed === false
        ? `Revision ${target} is already the content in force: nothing written.`
        : `Done: revision ${num(applied.revision)} restores revision ${target}.`);
      result.dataset.outcome = "ok";
      await load();
    } catch (error) {
      setText(result, `Refused: ${error.message}${error.code ? ` (${error.code})` : ""}`);
      result.dataset.outcome = "error";
    }
  }

  async function load() {
    const reply = await rpc("SpecService", "ListSpecRevisions", { namespace, name });
    if (disposed) return;
    revisions = reply.revisions ?? [];
    const newest = revisions[revisions.length - 1];
    fill(revisionsBody, [...revisions].reverse().map((revision) => {
      const number = num(revision.revision);
      const isCurrent = revision === newest;
      const deleted = revisionActionWord(revision.action) === "delete";
      const action = revisionActionWord(revision.action)
        + (num(revision.rolledBackTo) ? ` (restores ${num(revision.rolledBackTo)})` : "");
      const view = h("button", { type: "button", class: "small" }, "Show");
      view.addEventListener("click", () => show(revision));
      const back = h("button", {
        type: "button", class: "small danger", testid: "rollback", "data-revision": number,
        disabled: !allowed || isCurrent || deleted,
        title: !allowed ? "Admins only" : isCurrent ? "This is the current revision" : `Restore revision ${number}`,
      }, `Roll back to ${number}`);
      back.addEventListener("click", () => rollback(revision));
      return h("tr", { testid: "revision-row", "data-revision": number, class: isCurrent ? "current" : "" },
        h("th", { scope: "row", class: "num" }, String(number), isCurrent ? h("span", { class: "tag" }, "current") : null),
        h("td", {}, action),
        h("td", {}, formatTime(revision.createTime, { withDate: true })),
        h("td", {}, h("code", {}, shortDigest(revision.digest))),
        h("td", {}, deleted ? "—" : view),
        h("td", {}, back));
    }));
    if (!revisions.length) emptyRow(revisionsBody, 6, "No revisions.");
    const options = [...revisions].reverse().map((r) => h("option", { value: String(num(r.revision)) }, `revision ${num(r.revision)}`));
    fill(from, options.map((o) => o.cloneNode(true)));
    fill(to, options);
    // By default: what the newest revision changed.
    const values = revisions.map((r) => String(num(r.revision)));
    to.value = values[values.length - 1] ?? "";
    from.value = values[values.length - 2] ?? values[0] ?? "";
    if (newest) show(newest);
    renderDiff();
  }

  from.addEventListener("change", renderDiff);
  to.addEventListener("change", renderDiff);
  load().catch((error) => {
    if (!disposed) setText(result, `Could not load the revisions: ${error.message}`);
  });
  return () => {
    disposed = true;
  };
}
