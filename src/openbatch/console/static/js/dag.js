// A workflow's DAG as SVG: steps in columns by depth (longest path from a root), ordered within a
// column by where their parents are, edges as curves. Enough for the tens of steps workflows have.
const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 180;
const NODE_H = 50;
const GAP_X = 70;
const GAP_Y = 18;
const PAD = 16;

function el(name, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) node.append(child);
  return node;
}

/** Columns of step names: depth = the longest path from a step without dependencies. */
export function layers(steps) {
  const depth = {};
  const visiting = new Set();
  const depthOf = (name) => {
    if (depth[name] !== undefined) return depth[name];
    if (visiting.has(name)) return 0; // a cycle cannot be registered; never loop on one anyway
    visiting.add(name);
    const parents = (steps[name]?.dependsOn || []).filter((p) => p in steps);
    depth[name] = parents.length ? 1 + Math.max(...parents.map(depthOf)) : 0;
    visiting.delete(name);
    return depth[name];
  };
  const columns = [];
  for (const name of Object.keys(steps)) (columns[depthOf(name)] ||= []).push(name);
  // Order each column by the mean row of its parents, so that edges cross less.
  const row = {};
  columns.forEach((column, c) => {
    if (c > 0) {
      const key = (n) => {
        const parents = (steps[n].dependsOn || []).filter((p) => p in row);
        return parents.length ? parents.reduce((s, p) => s + row[p], 0) / parents.length : 0;
      };
      column.sort((a, b) => key(a) - key(b));
    }
    column.forEach((name, r) => (row[name] = r));
  });
  return columns;
}

/**
 * @param steps {name: {dependsOn: [..]}} from the workflow's definition
 * @param states {name: {status, jobId, arraySize}} from the run
 * @param href (name) => link for a step, or null
 */
export function drawDag(steps, states, href) {
  const columns = layers(steps);
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + columns.length * NODE_W + Math.max(0, columns.length - 1) * GAP_X;
  const pos = {};
  columns.forEach((column, c) => {
    const columnHeight = column.length * NODE_H + (column.length - 1) * GAP_Y;
    const top = (height - columnHeight) / 2;
    column.forEach((name, r) => (pos[name] = { x: PAD + c * (NODE_W + GAP_X), y: top + r * (NODE_H + GAP_Y) }));
  });
  const svg = el("svg", {
    width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Workflow steps and their dependencies",
  });
  const arrow = el("marker", { id: "arrow", viewBox: "0 0 8 8", refX: "7", refY: "4", markerWidth: "7", markerHeight: "7", orient: "auto" },
    el("path", { d: "M0,0 L8,4 L0,8 z", fill: "currentColor" }));
  svg.append(el("defs", {}, arrow));
  const edges = el("g", { class: "edges" });
  for (const [name, step] of Object.entries(steps)) {
    for (const parent of step.dependsOn || []) {
      if (!pos[parent]) continue;
      const a = { x: pos[parent].x + NODE_W, y: pos[parent].y + NODE_H / 2 };
      const b = { x: pos[name].x - 2, y: pos[name].y + NODE_H / 2 };
      const mid = (a.x + b.x) / 2;
      edges.append(el("path", {
        class: "edge", d: `M${a.x},${a.y} C${mid},${a.y} ${mid},${b.y} ${b.x},${b.y}`, "marker-end": "url(#arrow)",
        "data-from": parent, "data-to": name,
      }));
    }
  }
  svg.append(edges);
  for (const name of Object.keys(steps)) {
    const state = states[name] || { status: "WAITING" };
    const { x, y } = pos[name];
    const label = name.length > 22 ? name.slice(0, 21) + "…" : name;
    const sub = state.status + (state.arraySize ? ` · ${state.arraySize} children` : "");
    const group = el("g", { class: "node", "data-step": name, "data-status": state.status },
      el("title", {}, `${name}: ${state.status}${state.reason ? " — " + state.reason : ""}`),
      el("rect", { x, y, width: NODE_W, height: NODE_H, rx: 8 }),
      el("rect", { class: "stripe", x: x + 1, y: y + 1, width: 5, height: NODE_H - 2, rx: 2 }),
      el("text", { x: x + 16, y: y + 21 }, label),
      el("text", { class: "sub", x: x + 16, y: y + 38 }, sub),
    );
    const link = href(name, state);
    if (link) {
      const anchor = el("a", { class: "node", href: link, "data-step": name, "data-status": state.status, tabindex: "0" });
      group.removeAttribute("class");
      anchor.append(group);
      svg.append(anchor);
    } else {
      svg.append(group);
    }
  }
  svg.style.color = "var(--muted)";
  return svg;
}
