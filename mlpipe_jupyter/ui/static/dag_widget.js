// The mlpipe DAG widget: an anywidget ES module, no build step, no imports.
//
// Traits (see widget.py): `graph` (positions, sent once), `steps` (full snapshot),
// `patch` (steps changed since the last flush), `run` (header), `detail` (clicked step),
// `message` (a validation error), `selected` (set here). Each view keeps its own merged copy
// of the step states and redraws only the nodes a patch names.
//
// In reading order: the states; pure functions deciding what a node, an edge, the header and
// the panel show (exported for tests/js/); DOM helpers and drawing; DagView, one view and its
// update loop. Importing the module touches neither `document` nor `location`: node imports it.

// -- states --------------------------------------------------------------------------------
// mlpipe_jupyter.model.states.StepState with its is_final and is_ok (tests/unit/test_widget_js.py
// checks every member against the enum), plus `idle`, the widget's own: registered, not run.
// The only place a state's name is written: code says STATE.running. The CSS has a colour
// for each (--c-<name>).
export const STATES = Object.freeze({
  idle: { final: false, ok: false, widgetOnly: true, label: "not run" },
  queued: { final: false, ok: false },
  running: { final: false, ok: false },
  succeeded: { final: true, ok: true },
  failed: { final: true, ok: false },
  cached: { final: true, ok: true },
  skipped: { final: true, ok: false },
  cancelled: { final: true, ok: false },
});
// each state's name by itself (tests/js/states.test.mjs catches a misspelt one)
export const STATE = Object.freeze(Object.fromEntries(Object.keys(STATES).map((s) => [s, s])));
// the header's counts: what is done, what is under way, what went wrong, what never ran
export const COUNT_ORDER = Object.freeze([STATE.succeeded, STATE.cached, STATE.running,
  STATE.queued, STATE.failed, STATE.skipped, STATE.cancelled, STATE.idle]);

// states arrive as text from the kernel: an unknown one (a newer mlpipe) is shown by its name
const isKnown = (state) => Object.hasOwn(STATES, state);
const known = (state) => (isKnown(state) ? STATES[state] : null);
export const labelOf = (state) => known(state)?.label ?? state;
export const isFinal = (state) => Boolean(known(state)?.final);
export const isOk = (state) => Boolean(known(state)?.ok);
// over without a usable result: the steps after it are blocked
export const isBad = (state) => isFinal(state) && !isOk(state);

const LOG_TAIL = 40; // widget.py sends at most this many lines of a step's log

// -- what each part shows (pure) -----------------------------------------------------------
export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

export function clip(text, max) {
  return text && text.length > max ? text.slice(0, max - 1) + "…" : text || "";
}

export const shortRun = (id) => (id ? id.split("-").pop() : "");

// seconds a step took, or has taken so far at `now` (kernel time); null before it started
export function stepDuration(rec, now) {
  if (!rec || !rec.started) return null;
  return (rec.finished || now) - rec.started;
}

// a node's second line; `outputs` are the step's declared outputs (shown before it runs)
export function stepSubtitle(rec, outputs, now) {
  const st = rec.state;
  const took = () => fmtDuration(stepDuration(rec, now));
  switch (st) {
    case STATE.idle: {
      const outs = (outputs || []).join(", ");
      return outs ? `→ ${outs}` : "no outputs";
    }
    case STATE.queued:
      return labelOf(st);
    case STATE.running: { // cells done, not the state: the spinner and the colour show it
      const cells = rec.total ? `${rec.done}/${rec.total} cells · ` : `${labelOf(st)} · `;
      const attempt = rec.attempt > 1 ? ` · try ${rec.attempt}` : "";
      return `${cells}${took()}${attempt}`;
    }
    case STATE.cached:
      return rec.reused_from ? `reused from …${shortRun(rec.reused_from)}` : labelOf(st);
    case STATE.skipped:
    case STATE.cancelled: {
      const why = (rec.reason || "").replace(/^upstream /, "");
      return `${labelOf(st)}${why ? " · " + why : ""}`;
    }
    default:
      return `${labelOf(st)} · ${took()}`;
  }
}

export function stepTooltip(name, rec) {
  const why = rec.error || rec.reason;
  return `${name}: ${labelOf(rec.state)}${why ? "\n" + why : ""}`;
}

// the share of a running step's cells done: its progress bar
export function progress(rec) {
  return rec.state === STATE.running && rec.total ? rec.done / rec.total : 0;
}

// merges a `patch` trait's steps into a view's copy, field by field as widget.py's protocol
// says; returns the names of the steps it changed
export function mergePatch(steps, patched) {
  const changed = Object.keys(patched || {});
  for (const name of changed) steps[name] = { ...(steps[name] || {}), ...patched[name] };
  return changed;
}

// one smooth path through the routed points: vertical tangents at every point
export function edgePath(points) {
  let d = `M${points[0][0]},${points[0][1]}`;
  for (let i = 1; i < points.length; i++) {
    const [x0, y0] = points[i - 1];
    const [x1, y1] = points[i];
    if (x0 === x1) d += `L${x1},${y1}`;
    else {
      const my = (y0 + y1) / 2;
      d += `C${x0},${my} ${x1},${my} ${x1},${y1}`;
    }
  }
  return d;
}

// an edge's look (data-flow) from the states at its two ends
export function edgeFlow(source, target) {
  if (isBad(source)) return "blocked";
  if (isOk(source)) return target === STATE.running ? "active" : "done";
  return "pending";
}

// "3 succeeded · 1 running" for the states of all steps, in COUNT_ORDER
export function countsText(states) {
  const tally = {};
  for (const st of states) tally[st] = (tally[st] || 0) + 1;
  return COUNT_ORDER.filter((s) => tally[s]).map((s) => `${tally[s]} ${labelOf(s)}`).join(" · ");
}

// everything the header shows for the `run` trait; `states` are the steps' states
export function headerOf(run, graph, states, now) {
  const state = run.state || STATE.idle;
  const final = isFinal(state);
  const live = Boolean(run.id) && !final;
  const name = graph.title ? `${graph.title}` : "pipeline";
  const elapsed = run.started ? " · " + fmtDuration((run.finished || now) - run.started) : "";
  let note = "";
  if (run.error) note = run.error;
  else if (run.waiting && live) note = "The kernel is waiting for this run: interrupt the kernel (■) to cancel it.";
  else if (live && run.log) note = run.log;
  else if (final && run.reason) note = run.reason;
  return {
    state,
    badge: labelOf(state),
    title: run.id ? `${name} · run ${run.id}` : name,
    counts: countsText(states) + elapsed,
    // Cancel while the run lives, Retry once it is over
    cancel: {
      hidden: !live, disabled: Boolean(run.cancelling),
      text: run.cancelling ? "Cancelling…" : "Cancel",
    },
    retry: {
      hidden: !run.id || live || !run.can_retry, disabled: !run.can_retry || Boolean(run.retrying),
      text: run.retrying && !live ? "Retrying…" : "Retry failed",
    },
    note,
    warn: Boolean(run.error) || (final && state !== STATE.succeeded),
  };
}

// the [term, value] pairs under a step's name in its panel (`d`: the `detail` trait)
export function panelFacts(d, now) {
  const facts = [];
  const took = stepDuration(d, now);
  if (took !== null && d.state !== STATE.cached) facts.push(["Duration", fmtDuration(took)]);
  if (d.state === STATE.running && d.total) facts.push(["Progress", `${d.done}/${d.total} cells`]);
  if (d.attempt > 1 && d.state !== STATE.failed) facts.push(["Attempt", String(d.attempt)]);
  if (d.state === STATE.cached) facts.push(["Cache", d.reason || "reused"]);
  else if (d.reason && !d.error && d.state !== STATE.idle) {
    facts.push([isBad(d.state) ? "Why" : "Ran because", d.reason]);
  }
  if (d.state === STATE.failed && d.attempt > 1) facts.push(["Tries", `failed ${d.attempt} times`]);
  const outs = Object.keys(d.outputs || {});
  if (outs.length) facts.push(["Outputs", outs.join(", ")]);
  return facts;
}

// a step's error in the panel: a head line, where it happened (null: no such line), traceback
export function errorSummary(error) {
  // "step `x` failed in the step code, line 3: E: v" -> "in the step code, line 3"
  const at = /failed in (.+?): /.exec(error.message || "");
  const where = at ? `in ${at[1]}` : error.cell ? `in ${error.cell}` : "";
  return {
    head: (error.ename ? `${error.ename}: ${error.evalue || ""}` : error.message) || "",
    where: error.ename ? where || error.message || "" : null,
    // IPython's traceback opens with a rule of dashes: noise in a narrow panel
    trace: error.traceback ? error.traceback.replace(/^-{20,}\n/, "") : null,
  };
}

export function logSection(d) {
  const lines = d.log || [];
  const quiet = isFinal(d.state) ? "(the step printed nothing)" : "(no output yet)";
  return {
    title: lines.length >= LOG_TAIL ? `Log (last ${LOG_TAIL} lines)` : "Log",
    text: lines.length ? lines.join("\n") : quiet,
  };
}

// `/lab/tree/<dir>/<notebook>` (also workspaces, /doc/tree, Notebook 7's /notebooks):
// a path relative to the notebook's directory as a document URL and a contents-API URL
export function documentUrls(rel, pathname = location.pathname) {
  const m = pathname.match(/^(.*?\/)((?:lab|doc)(?:\/workspaces\/[^/]+)?\/tree|notebooks)\/(.+)$/);
  if (!m || !rel) return null;
  const [, base, route, nbPath] = m;
  const parts = nbPath.split("/").slice(0, -1);
  for (const seg of rel.split("/")) {
    if (seg === "..") {
      if (!parts.length) return null;
      parts.pop();
    } else if (seg && seg !== ".") parts.push(encodeURIComponent(seg));
  }
  const path = parts.join("/");
  return { href: `${base}${route}/${path}`, api: `${base}api/contents/${path}?content=0` };
}

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

// icons drawn in a 20x20 box centred on (0, 0): no font glyphs needed
const ICONS = {
  [STATE.idle]: '<circle r="8" class="ring" stroke-dasharray="3 2.2"/>',
  [STATE.queued]: '<circle r="8" class="ring"/><path class="hand" d="M0,-4.5V0H3.5"/>',
  [STATE.running]: '<circle r="8" class="ring faint"/><path class="spin" d="M0,-8A8,8 0 0 1 8,0"/>',
  [STATE.succeeded]: '<circle r="9" class="disc"/><path class="mark" d="M-4.2,0.3L-1.2,3.3L4.4,-3"/>',
  [STATE.failed]: '<circle r="9" class="disc"/><path class="mark" d="M-3.4,-3.4L3.4,3.4M3.4,-3.4L-3.4,3.4"/>',
  [STATE.cached]: '<circle r="9" class="disc"/><path class="mark" d="M3.9,-2.3A4.5,4.5 0 1 0 4.3,1.6"/>' +
    '<path class="mark fill" d="M1.6,-3.4L5.4,-4.6L5.0,-0.6Z"/>',
  [STATE.skipped]: '<circle r="9" class="disc"/><path class="mark" d="M-4.5,-3.5L-0.8,0L-4.5,3.5M0.6,-3.5L4.3,0L0.6,3.5"/>',
  [STATE.cancelled]: '<circle r="9" class="disc"/><rect class="mark fill" x="-3.2" y="-3.2" width="6.4" height="6.4" rx="1"/>',
};
export const iconOf = (state) => (isKnown(state) ? ICONS[state] : ICONS[STATE.idle]);

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

// -- one view ------------------------------------------------------------------------------
let views = 0; // unique ids for each view's SVG defs

// One rendering of the model (a notebook may show a widget more than once): its elements, its
// merged copy of the steps, and the updates that keep them in step with the model's traits.
class DagView {
  constructor(model, host) {
    this.model = model;
    this.id = ++views;
    this.ui = drawShell(host);
    this.steps = {};
    this.clockOffset = 0; // kernel time minus browser time, in seconds
    this.fit = true;
    this.nodes = new Map(); // step -> drawNode's entry, with the state it shows
    this.edges = []; // drawEdge's entries
    this.traceOpen = false; // the panel is redrawn as logs arrive: keep what the user opened
    this.panelClock = null; // the panel's duration of a running step, ticked with the nodes
  }

  now() { return Date.now() / 1000 + this.clockOffset; }

  syncClock(kernelNow) {
    if (kernelNow) this.clockOffset = kernelNow - Date.now() / 1000;
  }

  stateOf(name) { return (this.steps[name] || {}).state; }

  select(name) {
    this.model.set("selected", name);
    this.model.save_changes();
  }

  drawGraph() {
    const { canvas } = this.ui;
    const g = this.model.get("graph") || {};
    canvas.textContent = "";
    this.nodes.clear();
    this.edges.length = 0;
    if (!(g.nodes || []).length) {
      if (!this.model.get("message")) {
        el("div", { class: "mp-empty", text: "No steps registered yet: run your %%step cells first." }, canvas);
      }
      return;
    }
    const layers = drawSvg(canvas, g, this.id);
    // past a few dozen edges the labels only clutter: each edge still names them on hover
    const labelled = g.edges.length <= 60;
    for (const e of g.edges) this.edges.push(drawEdge(layers, e, labelled));
    for (const n of g.nodes) {
      const entry = drawNode(layers.nodes, n);
      this.nodes.set(n.name, entry);
      const toggle = () => this.select(this.model.get("selected") === n.name ? "" : n.name);
      entry.group.addEventListener("click", toggle);
      entry.group.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); toggle(); }
      });
    }
    this.applyFit();
    for (const name of this.nodes.keys()) this.updateNode(name);
    this.updateEdges();
    this.markSelected();
  }

  applyFit() {
    const { canvas, body, fitBtn } = this.ui;
    const s = canvas.querySelector("svg");
    const g = this.model.get("graph") || {};
    // the toggle only matters for a graph wider than the space it has
    fitBtn.hidden = !s || (this.fit && g.width <= body.clientWidth);
    if (!s) return;
    // natural size; "fit" lets CSS scale it down to the width available, "1:1" scrolls
    s.setAttribute("width", g.width);
    s.classList.toggle("fit", this.fit);
    fitBtn.textContent = this.fit ? "1:1" : "Fit";
  }

  updateNode(name) {
    const entry = this.nodes.get(name);
    if (!entry) return;
    const rec = this.steps[name] || { state: STATE.idle };
    const st = rec.state;
    if (entry.state !== st) {
      entry.state = st;
      entry.group.setAttribute("data-state", st);
      entry.box.setAttribute("data-state", st);
      entry.icon.innerHTML = iconOf(st);
    }
    if (entry.label.textContent === "") fitText(entry.label, name, entry.n.w - 48, 7.6);
    fitText(entry.sub, stepSubtitle(rec, entry.n.outputs, this.now()), entry.n.w - 48);
    entry.bar.setAttribute("width", Math.max(0, (entry.n.w - 24) * progress(rec)));
    entry.tip.textContent = stepTooltip(name, rec);
  }

  updateEdges() {
    for (const e of this.edges) {
      const flow = edgeFlow(this.stateOf(e.source), this.stateOf(e.target));
      e.path.setAttribute("data-flow", flow);
      if (e.label) e.label.setAttribute("data-flow", flow);
    }
  }

  markSelected() {
    const sel = this.model.get("selected");
    for (const [name, entry] of this.nodes) entry.group.classList.toggle("selected", name === sel);
  }

  updateHeader() {
    const ui = this.ui;
    const states = [...this.nodes.keys()].map((n) => this.stateOf(n) || STATE.idle);
    const h = headerOf(this.model.get("run") || {}, this.model.get("graph") || {}, states, this.now());
    ui.root.setAttribute("data-run-state", h.state);
    ui.badge.setAttribute("data-state", h.state);
    ui.badge.textContent = h.badge;
    ui.title.textContent = h.title;
    ui.counts.textContent = h.counts;
    for (const [button, look] of [[ui.cancelBtn, h.cancel], [ui.retryBtn, h.retry]]) {
      button.hidden = look.hidden;
      button.disabled = look.disabled;
      button.textContent = look.text;
    }
    ui.note.textContent = h.note;
    ui.note.hidden = !h.note;
    ui.note.classList.toggle("mp-warn", h.warn);
  }

  updateMessage() {
    const { message } = this.ui;
    const text = this.model.get("message");
    message.textContent = text ? `Cannot draw the pipeline: ${text}` : "";
    message.hidden = !text;
  }

  renderPanel() {
    const { panel } = this.ui;
    const d = this.model.get("detail") || {};
    const sel = this.model.get("selected");
    const oldLog = panel.querySelector(".mp-log");
    const followLog = !oldLog || oldLog.scrollTop + oldLog.clientHeight >= oldLog.scrollHeight - 4;
    panel.textContent = "";
    this.panelClock = null;
    if (!sel || d.step !== sel) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const head = el("div", { class: "mp-panel-head" }, panel);
    const icon = svg("svg", { class: "mp-panel-icon", viewBox: "-10 -10 20 20", width: 18, height: 18, "data-state": d.state }, head);
    icon.innerHTML = iconOf(d.state);
    el("b", { text: d.step }, head);
    el("span", { class: "mp-badge", "data-state": d.state, text: labelOf(d.state) }, head);
    el("span", { class: "mp-spacer" }, head);
    const close = el("button", { class: "mp-btn mp-close", type: "button", title: "Close", text: "×" }, head);
    close.addEventListener("click", () => this.select(""));

    const facts = panelFacts(d, this.now());
    if (facts.length) {
      const dl = el("dl", { class: "mp-facts" }, panel);
      for (const [k, v] of facts) {
        el("dt", { text: k }, dl);
        const dd = el("dd", { text: v }, dl);
        if (k === "Duration" && d.state === STATE.running) this.panelClock = { dd, d };
      }
    }
    if (d.error) drawError(panel, d.error, this.traceOpen, (open) => { this.traceOpen = open; });
    const { title, text } = logSection(d);
    el("div", { class: "mp-section", text: title }, panel);
    const log = el("pre", { class: "mp-log", text }, panel);
    // stay at the newest line, unless the user scrolled up to read
    log.scrollTop = followLog ? log.scrollHeight : oldLog.scrollTop;
    drawLinks(panel, d.notebook || {});
  }

  applySteps(changed) {
    for (const name of changed) this.updateNode(name);
    this.updateEdges();
    this.updateHeader();
  }

  // durations of running steps tick in the browser; the kernel only sends changes
  tick() {
    for (const name of this.nodes.keys()) {
      if (this.stateOf(name) === STATE.running) this.updateNode(name);
    }
    const clock = this.panelClock;
    if (clock) clock.dd.textContent = fmtDuration(stepDuration(clock.d, this.now()));
    const run = this.model.get("run") || {};
    if (run.started && !run.finished) this.updateHeader();
  }

  // a button that asks the kernel: disabled with its new text until the kernel answers
  ask(button, text, type) {
    button.disabled = true;
    button.textContent = text;
    this.model.send({ type });
  }

  // draws the view, follows the model's traits; returns what anywidget calls to stop
  start() {
    const { model, ui } = this;
    const handlers = {
      "change:graph": () => { this.drawGraph(); this.updateHeader(); },
      "change:steps": () => {
        this.steps = { ...(model.get("steps") || {}) };
        this.applySteps(Object.keys(this.steps));
      },
      "change:patch": () => {
        const p = model.get("patch") || {};
        this.syncClock(p.now);
        this.applySteps(mergePatch(this.steps, p.steps));
      },
      "change:run": () => { this.syncClock((model.get("run") || {}).now); this.updateHeader(); },
      "change:detail": () => this.renderPanel(),
      "change:selected": () => { this.traceOpen = false; this.markSelected(); this.renderPanel(); },
      "change:message": () => this.updateMessage(),
    };
    for (const [ev, fn] of Object.entries(handlers)) model.on(ev, fn);
    ui.cancelBtn.addEventListener("click", () => this.ask(ui.cancelBtn, "Cancelling…", "cancel"));
    ui.retryBtn.addEventListener("click", () => this.ask(ui.retryBtn, "Retrying…", "retry"));
    ui.fitBtn.addEventListener("click", () => { this.fit = !this.fit; this.applyFit(); });

    this.steps = { ...(model.get("steps") || {}) };
    this.syncClock((model.get("run") || {}).now);
    this.updateMessage();
    this.drawGraph();
    this.updateHeader();
    this.renderPanel();
    // this view may be late (a re-display, a reloaded page): ask the kernel for the full state
    model.send({ type: "sync" });

    const timer = setInterval(() => this.tick(), 500);
    const resize = typeof ResizeObserver === "function" ? new ResizeObserver(() => this.applyFit()) : null;
    if (resize) resize.observe(ui.body);
    return () => {
      clearInterval(timer);
      if (resize) resize.disconnect();
      for (const [ev, fn] of Object.entries(handlers)) model.off(ev, fn);
    };
  }
}

function render({ model, el: host }) {
  return new DagView(model, host).start();
}

export default { render };
