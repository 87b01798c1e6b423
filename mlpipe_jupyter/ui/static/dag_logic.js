// The mlpipe DAG widget, part 1 of 3: the states and the pure functions deciding what a node,
// an edge, the header and the panel show. anywidget loads one ES module with no imports, so
// widget.py joins dag_logic.js, dag_draw.js and dag_widget.js, in that order, into its `_esm`:
// the three share one scope. This part uses nothing from the other two and touches neither
// `document` nor `location` when loaded: tests/js import it alone. Its exports are exports of
// the joined module too (anywidget only calls the default one's render).

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
// `3/5 cells`, or a fan-out step's `37/100 batches · 1 failed` (`failed` is set only for those)
export function progressOf(rec) {
  if (rec.failed === null || rec.failed === undefined) return `${rec.done}/${rec.total} cells`;
  const failed = rec.failed ? ` · ${rec.failed} failed` : "";
  return `${rec.done}/${rec.total} batches${failed}`;
}

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
      const cells = rec.total ? `${progressOf(rec)} · ` : `${labelOf(st)} · `;
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
  if (d.state === STATE.running && d.total) facts.push(["Progress", progressOf(d)]);
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

// a fan-out step's failed mini-batches (run/foreach.py's record) as the panel lists them, one
// row each: `items 5-9: ValueError: bad batch 5 (line 2)` and its traceback (null: none)
export function failureRows(failures) {
  return (failures || []).map((f) => {
    const [first, last] = f.items;
    const items = first === last ? `item ${first}` : `items ${first}-${last}`;
    const line = f.line ? ` (line ${f.line})` : "";
    return {
      batch: f.batch,
      items: first === last ? String(first) : `${first}-${last}`,
      text: `${items}: ${f.ename}: ${(f.evalue || "").split("\n")[0]}${line}`,
      trace: f.traceback ? f.traceback.replace(/^-{20,}\n/, "") : null,
    };
  });
}

export function logSection(d) {
  const lines = d.log || [];
  const quiet = isFinal(d.state) ? "(the step printed nothing)" : "(no output yet)";
  return {
    title: lines.length >= LOG_TAIL ? `Log (last ${LOG_TAIL} lines)` : "Log",
    text: lines.length ? lines.join("\n") : quiet,
  };
}

// how many of a log tail's first lines a newer tail no longer has: the fewest whose removal
// leaves `before` a prefix of `after` (all of them when the two do not overlap)
export function linesDropped(before, after) {
  for (let k = 0; k < before.length; k++) {
    const kept = before.slice(k);
    if (kept.length <= after.length && kept.every((line, i) => line === after[i])) return k;
  }
  return before.length;
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
