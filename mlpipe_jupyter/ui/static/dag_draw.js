// The mlpipe DAG widget, part 2 of 3: DOM helpers and the builders of a view's parts (shell,
// graph, edges, nodes, the panel's error, failures, log and links). Joined by widget.py after
// dag_logic.js, whose names (STATE, clip, edgePath, errorSummary, documentUrls, ...) it uses,
// and before dag_widget.js, which calls these builders. Loading it touches no `document`.

// -- DOM helpers ---------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, parent = null, ns = null) {
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  if (parent) parent.appendChild(node);
  return node;
}
const svg = (tag, attrs, parent) => el(tag, attrs, parent, SVG);

// the longest prefix of `full` that fits `width` pixels (measured; by characters when the
// view is not laid out, e.g. in a hidden tab)
function fitText(node, full, width, perChar = 6.4) {
  node.textContent = full;
  let measured = 0;
  try { measured = node.getComputedTextLength(); } catch (_) { /* not rendered */ }
  if (!measured) {
    node.textContent = clip(full, Math.floor(width / perChar));
    return;
  }
  if (measured <= width) return;
  let lo = 0;
  let hi = full.length;
  while (lo < hi) { // binary search on the prefix length
    const mid = Math.ceil((lo + hi) / 2);
    node.textContent = full.slice(0, mid) + "…";
    if (node.getComputedTextLength() <= width) lo = mid;
    else hi = mid - 1;
  }
  node.textContent = full.slice(0, lo) + "…";
}

// handled by mlpipe's JupyterLab extension (labextension/src/index.ts)
const OPEN_EVENT = "mlpipe:open-notebook";

const probes = new Map(); // contents-API URL -> Promise<status>
function probe(api) {
  if (!probes.has(api)) {
    probes.set(api, fetch(api, { credentials: "same-origin" })
      .then((r) => r.status).catch(() => 0));
  }
  return probes.get(api);
}

// -- drawing -------------------------------------------------------------------------------
// the frame of a view: header (badge, title, counts, buttons), note, message, graph and panel
function drawShell(host) {
  const root = el("div", { class: "mlpipe-dag" }, host);
  const header = el("div", { class: "mp-header" }, root);
  const badge = el("span", { class: "mp-badge" }, header);
  const title = el("span", { class: "mp-title" }, header);
  const counts = el("span", { class: "mp-counts" }, header);
  el("span", { class: "mp-spacer" }, header);
  const fitBtn = el("button", { class: "mp-btn mp-fit", type: "button", title: "Fit the graph to the width / show it at full size" }, header);
  const cancelBtn = el("button", { class: "mp-btn mp-cancel", type: "button", text: "Cancel" }, header);
  const retryBtn = el("button", { class: "mp-btn mp-retry", type: "button", text: "Retry failed" }, header);
  const note = el("div", { class: "mp-note" }, root);
  const message = el("div", { class: "mp-message", role: "alert" }, root);
  const body = el("div", { class: "mp-body" }, root);
  const canvas = el("div", { class: "mp-canvas" }, body);
  const panel = el("div", { class: "mp-panel", hidden: true }, body);
  return { root, badge, title, counts, fitBtn, cancelBtn, retryBtn, note, message, body, canvas, panel };
}

// the SVG of a laid-out graph (layout.py): edges, then their labels, then nodes on top
function drawSvg(canvas, g, viewId) {
  const root = svg("svg", {
    class: "mp-svg fit", viewBox: `0 0 ${g.width} ${g.height}`, width: g.width,
    role: "img", "aria-label": `pipeline DAG with ${g.nodes.length} steps`,
  }, canvas);
  const defs = svg("defs", {}, root);
  const marker = svg("marker", {
    id: `mp-arrow-${viewId}`,
    viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, defs);
  svg("path", { d: "M0,1L9,5L0,9Z", class: "mp-arrowhead" }, marker);
  return {
    marker: marker.id,
    edges: svg("g", { class: "mp-edges" }, root),
    labels: svg("g", { class: "mp-labels" }, root),
    nodes: svg("g", { class: "mp-nodes" }, root),
  };
}

function drawEdge(layers, e, labelled) {
  const path = svg("path", {
    class: "mp-edge", d: edgePath(e.points), "marker-end": `url(#${layers.marker})`,
    "data-source": e.source, "data-target": e.target,
  }, layers.edges);
  const full = e.artifacts.join(", ");
  if (e.artifacts.length) svg("title", { text: `${e.source} → ${e.target}: ${full}` }, path);
  let label = null;
  if (e.artifacts.length && labelled) {
    const wrap = svg("g", {}, layers.labels);
    svg("title", { text: `${e.source} → ${e.target}: ${full}` }, wrap);
    label = svg("text", { class: "mp-edge-label", x: e.label[0], y: e.label[1] + 4, text: clip(full, 26) }, wrap);
  }
  return { path, label, source: e.source, target: e.target };
}

// a step's node; its content is filled in by DagView.updateNode
function drawNode(layer, n) {
  const group = svg("g", {
    class: "mp-node", transform: `translate(${n.x},${n.y})`, tabindex: 0,
    role: "button", "data-step": n.name,
  }, layer);
  const tip = svg("title", {}, group);
  const box = svg("rect", { class: "mp-box", width: n.w, height: n.h, rx: 10, "data-step": n.name }, group);
  const icon = svg("g", { class: "mp-icon", transform: "translate(21,22)" }, group);
  const label = svg("text", { class: "mp-name", x: 38, y: 26 }, group);
  const sub = svg("text", { class: "mp-sub", x: 38, y: 44 }, group);
  svg("rect", { class: "mp-track", x: 12, y: n.h - 8, width: n.w - 24, height: 3, rx: 1.5 }, group);
  const bar = svg("rect", { class: "mp-bar", x: 12, y: n.h - 8, width: 0, height: 3, rx: 1.5 }, group);
  return { n, group, box, icon, sub, bar, tip, label, state: null };
}

// the panel's error box; `traceOpen` and `onToggle` keep the traceback open across redraws
function drawError(panel, error, traceOpen, onToggle) {
  const box = el("div", { class: "mp-error" }, panel);
  const { head, where, trace } = errorSummary(error);
  el("div", { class: "mp-error-head", text: head }, box);
  if (where !== null) el("div", { class: "mp-error-msg", text: where }, box);
  if (trace !== null) {
    const det = el("details", { open: traceOpen }, box);
    det.addEventListener("toggle", () => onToggle(det.open));
    el("summary", { text: "Traceback" }, det);
    el("pre", { class: "mp-trace", text: trace }, det);
  }
}

// the panel's failed mini-batches of a fan-out step (failureRows); `open` holds the batches
// whose traceback the user opened, kept across redraws
function drawFailures(panel, rows, open) {
  el("div", { class: "mp-section", text: "Failures" }, panel);
  const list = el("div", { class: "mp-failures" }, panel);
  for (const row of rows) {
    const item = el("div", { class: "mp-failure", "data-batch": row.batch, "data-items": row.items }, list);
    if (row.trace === null) {
      el("div", { class: "mp-failure-head", text: row.text }, item);
      continue;
    }
    const det = el("details", { open: open.has(row.batch) }, item);
    det.addEventListener("toggle", () => (det.open ? open.add(row.batch) : open.delete(row.batch)));
    el("summary", { class: "mp-failure-head", text: row.text }, det);
    el("pre", { class: "mp-trace", text: row.trace }, det);
  }
}

// Where a redrawn log scrolls to: null for its end (the reader was there, or the log is new or
// another step's), else where the reader was, minus the height of the lines the tail dropped, so
// the lines they read stay put. `old` is the log drawn last, { step, lines, node }: read before
// the panel is cleared, as a detached element's scrollTop is 0.
function keptLogScroll(old, step, lines) {
  if (!old || old.step !== step) return null;
  const { node } = old;
  if (node.scrollTop + node.clientHeight >= node.scrollHeight - 4) return null;
  const top = node.scrollTop;
  const dropped = linesDropped(old.lines, lines);
  if (!dropped) return top;
  // measured on the old log, about to be thrown away: its height without the dropped lines
  const full = node.scrollHeight;
  node.textContent = old.lines.slice(dropped).join("\n");
  return Math.max(0, top - (full - node.scrollHeight));
}

// the panel's log, scrolled to `kept` (keptLogScroll's answer)
function drawLog(panel, text, kept) {
  const log = el("pre", { class: "mp-log", text }, panel);
  log.scrollTop = kept === null ? log.scrollHeight : kept;
  return log;
}

// the executed notebook: a link that opens it where the page can, its path in any case
function drawLinks(panel, nb) {
  const links = el("div", { class: "mp-links" }, panel);
  if (!nb.exists) {
    el("span", { class: "mp-muted", text: "The executed notebook appears here once the step runs." }, links);
    return;
  }
  const urls = documentUrls(nb.href);
  const path = el("code", { class: "mp-path", text: nb.path, title: "executed notebook" }, links);
  // not in JupyterLab or Notebook 7 (VS Code, ...), or outside the server's root: the path
  // is what we have
  if (!urls) return;
  if (document.body.dataset.mlpipeRecords) {
    // our JupyterLab extension opens records (hidden under .mlpipe) in a read-only tab
    const a = el("a", { class: "mp-open", href: urls.href, target: "_blank", rel: "noopener", text: "Open executed notebook" });
    a.addEventListener("click", (e) => {
      const ask = new CustomEvent(OPEN_EVENT, { bubbles: true, cancelable: true, detail: { path: nb.href } });
      if (!a.dispatchEvent(ask)) e.preventDefault();
    });
    links.insertBefore(a, path);
    return;
  }
  const a = el("a", { class: "mp-open", href: urls.href, target: "_blank", rel: "noopener", text: "Open executed notebook ↗" });
  links.insertBefore(a, path);
  probe(urls.api).then((status) => {
    if (status === 404 || status === 403) {
      a.remove();
      el("div", {
        class: "mp-hint",
        text: "This Jupyter server does not serve files under .mlpipe (it hides dot-folders by " +
          "default) and mlpipe's JupyterLab extension is not loaded: install mlpipe-jupyter in " +
          "the server's environment, or open the file above.",
      }, links);
    }
  });
}
