// The mlpipe DAG widget, part 3 of 3: DagView, one view and its update loop, and the module's
// default export, which anywidget calls. Joined by widget.py after dag_logic.js (states, pure
// functions) and dag_draw.js (DOM builders), whose names it uses as its own.
//
// Traits (see widget.py): `graph` (positions, sent once), `steps` (full snapshot),
// `patch` (steps changed since the last flush), `run` (header), `detail` (clicked step),
// `message` (a validation error), `selected` (set here). Each view keeps its own merged copy
// of the step states and redraws only the nodes a patch names.

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
    this.failuresOpen = new Set(); // the failed mini-batches whose traceback is open
    this.panelClock = null; // the panel's duration of a running step, ticked with the nodes
    this.log = null; // the panel's log as last drawn: where its reader was when it is redrawn
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
    const lines = d.log || [];
    const kept = keptLogScroll(this.log, d.step, lines); // while the old log is on the page
    panel.textContent = "";
    this.panelClock = null;
    this.log = null;
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
    if (d.failures) drawFailures(panel, failureRows(d.failures), this.failuresOpen);
    const { title, text } = logSection(d);
    el("div", { class: "mp-section", text: title }, panel);
    // stay at the newest line, unless the user scrolled up to read
    this.log = { step: d.step, lines, node: drawLog(panel, text, kept) };
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
      "change:selected": () => { this.traceOpen = false; this.failuresOpen.clear(); this.markSelected(); this.renderPanel(); },
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
