// A line diff for two revisions of a spec: common prefix and suffix trimmed,
// then a longest-common-subsequence table over what is left. Specs are small
// (a few hundred lines); past MAX_CELLS the middle is shown as removed + added.

const MAX_CELLS = 4_000_000;

/** [{op: " " | "+" | "-", text}] turning `before` into `after` (arrays of lines). */
export function diffLines(before, after) {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start += 1;
  let endA = before.length;
  let endB = after.length;
  while (endA > start && endB > start && before[endA - 1] === after[endB - 1]) {
    endA -= 1;
    endB -= 1;
  }
  const a = before.slice(start, endA);
  const b = after.slice(start, endB);
  const ops = before.slice(0, start).map((text) => ({ op: " ", text }));
  if (a.length * b.length > MAX_CELLS) {
    ops.push(...a.map((text) => ({ op: "-", text })), ...b.map((text) => ({ op: "+", text })));
  } else {
    // lcs[i][j]: length of the LCS of a[i:] and b[j:], one flat typed array.
    const width = b.length + 1;
    const lcs = new Uint32Array((a.length + 1) * width);
    for (let i = a.length - 1; i >= 0; i -= 1) {
      for (let j = b.length - 1; j >= 0; j -= 1) {
        lcs[i * width + j] = a[i] === b[j]
          ? lcs[(i + 1) * width + j + 1] + 1
          : Math.max(lcs[(i + 1) * width + j], lcs[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < a.length && j < b.length) {
      if (a[i] === b[j]) {
        ops.push({ op: " ", text: a[i] });
        i += 1;
        j += 1;
      } else if (lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
        ops.push({ op: "-", text: a[i] });
        i += 1;
      } else {
        ops.push({ op: "+", text: b[j] });
        j += 1;
      }
    }
    while (i < a.length) ops.push({ op: "-", text: a[i++] });
    while (j < b.length) ops.push({ op: "+", text: b[j++] });
  }
  ops.push(...before.slice(endA).map((text) => ({ op: " ", text })));
  return ops;
}

export const splitLines = (text) => (text ? text.replace(/\r\n?/g, "\n").replace(/\n$/, "").split("\n") : []);
