// The mlpipe DAG widget: an anywidget ES module, no build step, no imports.
//
// Traits (see widget.py): `graph` (positions, sent once), `steps` (full snapshot),
// `patch` (steps changed since the last flush), `run` (header), `detail` (clicked step),
// `message` (a validation error), `selected` (set here). Each view keeps its own merged copy
// of the step states and redraws only the nodes a patch names.

const SVG = "http://www.w3.org/2000/svg";
const STATE_LABEL = {
  idle: "not run", queued: "queued", running: "running", succeeded: "succeeded",
  failed: "failed", cached: "cached", skipped: "skipped", cancelled: "cancelled",
};
const OK = new Set(["succeeded", "cached"]);
const FINAL = new Set(["succeeded", "failed", "cached", "skipped", "cancelled"]);
const BAD = new Set(["failed", "skipped", "cancelled"]);

// icons drawn in a 20x20 box centred on (0, 0): no font glyphs needed
const ICONS = {
  idle: '<circle r="8" class="ring" stroke-dasharray="3 2.2"/>',
  queued: '<circle r="8" class="ring"/><path class="hand" d="M0,-4.5V0H3.5"/>',
  running: '<circle r="8" class="ring faint"/><path class="spin" d="M0,-8A8,8 0 0 1 8,0"/>',
  succeeded: '<circle r="9" class="disc"/><path class="mark" d="M-4.2,0.3L-1.2,3.3L4.4,-3"/>',
  failed: '<circle r="9" class="disc"/><path class="mark" d="M-3.4,-3.4L3.4,3.4M3.4,-3.4L-3.4,3.4"/>',
  cached: '<circle r="9" class="disc"/><path class="mark" d="M3.9,-2.3A4.5,4.5 0 1 0 4.3,1.6"/>' +
    '<path class="mark fill" d="M1.6,-3.4L5.4,-4.6L5.0,-0.6Z"/>',
  skipped: '<circle r="9" class="disc"/><path class="mark" d="M-4.5,-3.5L-0.8,0L-4.5,3.5M0.6,-3.5L4.3,0L0.6,3.5"/>',
  cancelled: '<circle r="9" class="disc"/><rect class="mark fill" x="-3.2" y="-3.2" width="6.4" height="6.4" rx="1"/>',
};

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

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}m`;
}

function clip(text, max) {
  return text && text.length > max ? text.slice(0, max - 1) + "…" : text || "";
}

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

const shortRun = (id) => (id ? id.split("-").pop() : "");

// one smooth path through the routed points: vertical tangents at every point
function edgePath(points) {
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

// handled by mlpipe's JupyterLab extension (labextension/src/index.ts)
const OPEN_EVENT = "mlpipe:open-notebook";

let views = 0; // unique ids for each view's SVG defs
const probes = new Map(); // contents-API URL -> Promise<status>
function probe(api) {
  if (!probes.has(api)) {
    probes.set(api, fetch(api, { credentials: "same-origin" })
      .then((r) => r.status).catch(() => 0));
  }
  return probes.get(api);
}

function render({ model, el: host }) {
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

  const viewId = ++views;
  let steps = {};
  let clockOffset = 0; // kernel time minus browser time, in seconds
  let fit = true;
  const nodes = new Map(); // step -> {group, box, icon, label, sub, bar, tip, state}
  const edges = []; // {path, label, source, target}
  let traceOpen = false; // the panel is redrawn as logs arrive: keep what the user opened
  let panelClock = null; // the panel's duration of a running step, ticked with the nodes

  const now = () => Date.now() / 1000 + clockOffset;
  const syncClock = (kernelNow) => {
    if (kernelNow) clockOffset = kernelNow - Date.now() / 1000;
  };

  function duration(rec) {
    if (!rec || !rec.started) return null;
    return (rec.finished || now()) - rec.started;
  }

  function subtitle(name, rec, node) {
    const st = rec.state;
    if (st === "idle") {
      const outs = (node.outputs || []).join(", ");
      return outs ? `→ ${outs}` : "no outputs";
    }
    if (st === "queued") return "queued";
    if (st === "running") { // the spinner and the colour say "running"
      const cells = rec.total ? `${rec.done}/${rec.total} cells · ` : "running · ";
      const attempt = rec.attempt > 1 ? ` · try ${rec.attempt}` : "";
      return `${cells}${fmtDuration(duration(rec))}${attempt}`;
    }
    if (st === "cached") return rec.reused_from ? `reused from …${shortRun(rec.reused_from)}` : "cached";
    if (st === "skipped" || st === "cancelled") {
      const why = (rec.reason || "").replace(/^upstream /, "");
      return `${st}${why ? " · " + why : ""}`;
    }
    return `${STATE_LABEL[st] || st} · ${fmtDuration(duration(rec))}`;
  }

  function drawGraph() {
    const g = model.get("graph") || {};
    canvas.textContent = "";
    nodes.clear();
    edges.length = 0;
    if (!(g.nodes || []).length) {
      if (!model.get("message")) {
        el("div", { class: "mp-empty", text: "No steps registered yet: run your %%step cells first." }, canvas);
      }
      return;
    }
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
    const edgeLayer = svg("g", { class: "mp-edges" }, root);
    const labelLayer = svg("g", { class: "mp-labels" }, root);
    const nodeLayer = svg("g", { class: "mp-nodes" }, root);
    // past a few dozen edges the labels only clutter: each edge still names them on hover
    const labelled = g.edges.length <= 60;
    for (const e of g.edges) {
      const path = svg("path", {
        class: "mp-edge", d: edgePath(e.points), "marker-end": `url(#${marker.id})`,
        "data-source": e.source, "data-target": e.target,
      }, edgeLayer);
      if (e.artifacts.length) svg("title", { text: `${e.source} → ${e.target}: ${e.artifacts.join(", ")}` }, path);
      let label = null;
      if (e.artifacts.length && labelled) {
        const full = e.artifacts.join(", ");
        const wrap = svg("g", {}, labelLayer);
        svg("title", { text: `${e.source} → ${e.target}: ${full}` }, wrap);
        label = svg("text", { class: "mp-edge-label", x: e.label[0], y: e.label[1] + 4, text: clip(full, 26) }, wrap);
      }
      edges.push({ path, label, source: e.source, target: e.target });
    }
    for (const n of g.nodes) {
      const group = svg("g", {
        class: "mp-node", transform: `translate(${n.x},${n.y})`, tabindex: 0,
        role: "button", "data-step": n.name,
      }, nodeLayer);
      const tip = svg("title", {}, group);
      const box = svg("rect", { class: "mp-box", width: n.w, height: n.h, rx: 10, "data-step": n.name }, group);
      const icon = svg("g", { class: "mp-icon", transform: "translate(21,22)" }, group);
      const label = svg("text", { class: "mp-name", x: 38, y: 26 }, group);
      const sub = svg("text", { class: "mp-sub", x: 38, y: 44 }, group);
      svg("rect", { class: "mp-track", x: 12, y: n.h - 8, width: n.w - 24, height: 3, rx: 1.5 }, group);
      const bar = svg("rect", { class: "mp-bar", x: 12, y: n.h - 8, width: 0, height: 3, rx: 1.5 }, group);
      const entry = { n, group, box, icon, sub, bar, tip, label, state: null };
      nodes.set(n.name, entry);
      const select = () => {
        model.set("selected", model.get("selected") === n.name ? "" : n.name);
        model.save_changes();
      };
      group.addEventListener("click", select);
      group.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(); }
      });
    }
    applyFit();
    for (const name of nodes.keys()) updateNode(name);
    updateEdges();
    markSelected();
  }

  function applyFit() {
    const s = canvas.querySelector("svg");
    const g = model.get("graph") || {};
    // the toggle only matters for a graph wider than the space it has
    fitBtn.hidden = !s || (fit && g.width <= body.clientWidth);
    if (!s) return;
    // natural size; "fit" lets CSS scale it down to the width available, "1:1" scrolls
    s.setAttribute("width", g.width);
    s.classList.toggle("fit", fit);
    fitBtn.textContent = fit ? "1:1" : "Fit";
  }

  function updateNode(name) {
    const entry = nodes.get(name);
    if (!entry) return;
    const rec = steps[name] || { state: "idle" };
    const st = rec.state;
    if (entry.state !== st) {
      entry.state = st;
      entry.group.setAttribute("data-state", st);
      entry.box.setAttribute("data-state", st);
      entry.icon.innerHTML = ICONS[st] || ICONS.idle;
    }
    if (entry.label.textContent === "") fitText(entry.label, name, entry.n.w - 48, 7.6);
    fitText(entry.sub, subtitle(name, rec, entry.n), entry.n.w - 48);
    const frac = st === "running" && rec.total ? rec.done / rec.total : 0;
    entry.bar.setAttribute("width", Math.max(0, (entry.n.w - 24) * frac));
    const why = rec.error || rec.reason;
    entry.tip.textContent = `${name}: ${STATE_LABEL[st] || st}${why ? "\n" + why : ""}`;
  }

  function updateEdges() {
    for (const e of edges) {
      const src = (steps[e.source] || {}).state;
      const dst = (steps[e.target] || {}).state;
      let flow = "pending";
      if (BAD.has(src)) flow = "blocked";
      else if (OK.has(src)) flow = dst === "running" ? "active" : "done";
      e.path.setAttribute("data-flow", flow);
      if (e.label) e.label.setAttribute("data-flow", flow);
    }
  }

  function markSelected() {
    const sel = model.get("selected");
    for (const [name, entry] of nodes) entry.group.classList.toggle("selected", name === sel);
  }

  function updateHeader() {
    const run = model.get("run") || {};
    const g = model.get("graph") || {};
    const state = run.state || "idle";
    root.setAttribute("data-run-state", state);
    badge.setAttribute("data-state", state);
    badge.textContent = state === "idle" ? "not run" : state;
    const name = g.title ? `${g.title}` : "pipeline";
    title.textContent = run.id ? `${name} · run ${run.id}` : name;
    const tally = {};
    for (const n of nodes.keys()) {
      const st = (steps[n] || {}).state || "idle";
      tally[st] = (tally[st] || 0) + 1;
    }
    const order = ["succeeded", "cached", "running", "queued", "failed", "skipped", "cancelled", "idle"];
    const parts = order.filter((s) => tally[s]).map((s) => `${tally[s]} ${STATE_LABEL[s]}`);
    let elapsed = "";
    if (run.started) elapsed = " · " + fmtDuration((run.finished || now()) - run.started);
    counts.textContent = parts.join(" · ") + elapsed;
    const live = Boolean(run.id) && !FINAL.has(state);
    // Cancel while the run lives, Retry once it is over
    cancelBtn.hidden = !live;
    cancelBtn.disabled = Boolean(run.cancelling);
    cancelBtn.textContent = run.cancelling ? "Cancelling…" : "Cancel";
    retryBtn.hidden = !run.id || live || !run.can_retry;
    retryBtn.disabled = !run.can_retry || Boolean(run.retrying);
    retryBtn.textContent = run.retrying && !live ? "Retrying…" : "Retry failed";
    let text = "";
    if (run.error) text = run.error;
    else if (run.waiting && live) text = "The kernel is waiting for this run: interrupt the kernel (■) to cancel it.";
    else if (live && run.log) text = run.log;
    else if (FINAL.has(state) && run.reason) text = run.reason;
    note.textContent = text;
    note.hidden = !text;
    note.classList.toggle("mp-warn", Boolean(run.error) || (FINAL.has(state) && state !== "succeeded"));
  }

  function updateMessage() {
    const text = model.get("message");
    message.textContent = text ? `Cannot draw the pipeline: ${text}` : "";
    message.hidden = !text;
  }

  function renderPanel() {
    const d = model.get("detail") || {};
    const sel = model.get("selected");
    const oldLog = panel.querySelector(".mp-log");
    const followLog = !oldLog || oldLog.scrollTop + oldLog.clientHeight >= oldLog.scrollHeight - 4;
    panel.textContent = "";
    panelClock = null;
    if (!sel || d.step !== sel) {
      panel.hidden = true;
      return;
    }
    panel.hidden = false;
    const head = el("div", { class: "mp-panel-head" }, panel);
    const icon = svg("svg", { class: "mp-panel-icon", viewBox: "-10 -10 20 20", width: 18, height: 18, "data-state": d.state }, head);
    icon.innerHTML = ICONS[d.state] || ICONS.idle;
    el("b", { text: d.step }, head);
    el("span", { class: "mp-badge", "data-state": d.state, text: STATE_LABEL[d.state] || d.state }, head);
    el("span", { class: "mp-spacer" }, head);
    const close = el("button", { class: "mp-btn mp-close", type: "button", title: "Close", text: "×" }, head);
    close.addEventListener("click", () => { model.set("selected", ""); model.save_changes(); });

    const facts = [];
    const took = duration(d);
    if (took !== null && d.state !== "cached") facts.push(["Duration", fmtDuration(took)]);
    if (d.state === "running" && d.total) facts.push(["Progress", `${d.done}/${d.total} cells`]);
    if (d.attempt > 1 && d.state !== "failed") facts.push(["Attempt", String(d.attempt)]);
    if (d.state === "cached") facts.push(["Cache", d.reason || "reused"]);
    else if (d.reason && !d.error && d.state !== "idle") facts.push([BAD.has(d.state) ? "Why" : "Ran because", d.reason]);
    if (d.state === "failed" && d.attempt > 1) facts.push(["Tries", `failed ${d.attempt} times`]);
    const outs = Object.keys(d.outputs || {});
    if (outs.length) facts.push(["Outputs", outs.join(", ")]);
    if (facts.length) {
      const dl = el("dl", { class: "mp-facts" }, panel);
      for (const [k, v] of facts) {
        el("dt", { text: k }, dl);
        const dd = el("dd", { text: v }, dl);
        if (k === "Duration" && d.state === "running") panelClock = { dd, d };
      }
    }
    if (d.error) {
      const box = el("div", { class: "mp-error" }, panel);
      // "step `x` failed in the step code, line 3: E: v" -> "in the step code, line 3"
      const at = /failed in (.+?): /.exec(d.error.message || "");
      const where = at ? `in ${at[1]}` : d.error.cell ? `in ${d.error.cell}` : "";
      const head = d.error.ename ? `${d.error.ename}: ${d.error.evalue || ""}` : d.error.message;
      el("div", { class: "mp-error-head", text: head }, box);
      if (d.error.ename && where) el("div", { class: "mp-error-msg", text: where }, box);
      else if (d.error.ename) el("div", { class: "mp-error-msg", text: d.error.message }, box);
      if (d.error.traceback) {
        const det = el("details", { open: traceOpen }, box);
        det.addEventListener("toggle", () => { traceOpen = det.open; });
        el("summary", { text: "Traceback" }, det);
        // IPython's traceback opens with a rule of dashes: noise in a narrow panel
        el("pre", { class: "mp-trace", text: d.error.traceback.replace(/^-{20,}\n/, "") }, det);
      }
    }
    const lines = d.log || [];
    el("div", { class: "mp-section", text: lines.length >= 40 ? "Log (last 40 lines)" : "Log" }, panel);
    const quiet = FINAL.has(d.state) ? "(the step printed nothing)" : "(no output yet)";
    const log = el("pre", { class: "mp-log", text: lines.length ? lines.join("\n") : quiet }, panel);
    // stay at the newest line, unless the user scrolled up to read
    log.scrollTop = followLog ? log.scrollHeight : oldLog.scrollTop;

    const nb = d.notebook || {};
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

  function applySteps(changed) {
    for (const name of changed) updateNode(name);
    updateEdges();
    updateHeader();
  }

  const onGraph = () => { drawGraph(); updateHeader(); };
  const onSteps = () => { steps = { ...(model.get("steps") || {}) }; applySteps(Object.keys(steps)); };
  const onPatch = () => {
    const p = model.get("patch") || {};
    syncClock(p.now);
    const changed = Object.keys(p.steps || {});
    for (const name of changed) steps[name] = { ...(steps[name] || {}), ...p.steps[name] };
    applySteps(changed);
  };
  const onSelected = () => { traceOpen = false; markSelected(); renderPanel(); };
  const onRun = () => { syncClock((model.get("run") || {}).now); updateHeader(); };
  const handlers = {
    "change:graph": onGraph, "change:steps": onSteps, "change:patch": onPatch,
    "change:run": onRun, "change:detail": renderPanel, "change:selected": onSelected,
    "change:message": updateMessage,
  };
  for (const [ev, fn] of Object.entries(handlers)) model.on(ev, fn);

  cancelBtn.addEventListener("click", () => {
    cancelBtn.disabled = true;
    cancelBtn.textContent = "Cancelling…";
    model.send({ type: "cancel" });
  });
  retryBtn.addEventListener("click", () => {
    retryBtn.disabled = true;
    retryBtn.textContent = "Retrying…";
    model.send({ type: "retry" });
  });
  fitBtn.addEventListener("click", () => { fit = !fit; applyFit(); });

  steps = { ...(model.get("steps") || {}) };
  syncClock((model.get("run") || {}).now);
  updateMessage();
  drawGraph();
  updateHeader();
  renderPanel();
  // this view may be late (a re-display, a reloaded page): ask the kernel for the full state
  model.send({ type: "sync" });

  // durations of running steps tick in the browser; the kernel only sends changes
  const timer = setInterval(() => {
    const running = [...nodes.keys()].filter((n) => (steps[n] || {}).state === "running");
    for (const name of running) updateNode(name);
    if (panelClock) panelClock.dd.textContent = fmtDuration(duration(panelClock.d));
    const run = model.get("run") || {};
    if (run.started && !run.finished) updateHeader();
  }, 500);

  const resize = typeof ResizeObserver === "function" ? new ResizeObserver(applyFit) : null;
  if (resize) resize.observe(body);

  return () => {
    clearInterval(timer);
    if (resize) resize.disconnect();
    for (const [ev, fn] of Object.entries(handlers)) model.off(ev, fn);
  };
}

export default { render };
