// The state table is the one place the widget names states; everything else derives from it.
import assert from "node:assert/strict";
import { test } from "node:test";

import { logic, source } from "./load_widget.mjs";

const { STATES, STATE, COUNT_ORDER, labelOf, isFinal, isOk, isBad, iconOf, mergePatch } = logic;
const NAMES = Object.keys(STATES);
// the module's code without its comments (a `// ` that opens a comment: not "http://...")
const code = source.replace(/(^|\s)\/\/ .*$/gm, "$1");

test("STATE names each state by itself", () => {
  assert.deepEqual(Object.entries(STATE), NAMES.map((n) => [n, n]));
  assert.ok(Object.isFrozen(STATES) && Object.isFrozen(STATE) && Object.isFrozen(COUNT_ORDER));
});

test("every STATE.x in the module is a state", () => {
  const used = new Set([...code.matchAll(/\bSTATE\.(\w+)/g)].map((m) => m[1]));
  assert.ok(used.size >= 8, [...used].join());
  assert.deepEqual([...used].filter((n) => !NAMES.includes(n)), []);
});

test("no state name is written as a string outside STATES", () => {
  const table = code.indexOf("export const STATES");
  const rest = code.slice(0, table) + code.slice(code.indexOf("});", table));
  const names = NAMES.join("|");
  const literals = [...rest.matchAll(new RegExp(`(["'\`])(${names})\\1`, "g"))].map((m) => m[0]);
  const keys = [...rest.matchAll(new RegExp(`(?<![.\\w])(${names})\\s*:`, "g"))].map((m) => m[0]);
  assert.deepEqual([...literals, ...keys], []);
});

test("idle is the widget's own state: not final, not ok, labelled 'not run'", () => {
  assert.deepEqual(NAMES.filter((n) => STATES[n].widgetOnly), [STATE.idle]);
  assert.equal(labelOf(STATE.idle), "not run");
  assert.equal(isFinal(STATE.idle) || isOk(STATE.idle), false);
});

test("final, ok and bad follow the table; unknown states are none of them", () => {
  assert.deepEqual(NAMES.filter(isFinal), ["succeeded", "failed", "cached", "skipped", "cancelled"]);
  assert.deepEqual(NAMES.filter(isOk), ["succeeded", "cached"]);
  assert.deepEqual(NAMES.filter(isBad), ["failed", "skipped", "cancelled"]);
  for (const odd of ["paused", "constructor", "__proto__", undefined]) {
    assert.equal(isFinal(odd) || isOk(odd) || isBad(odd), false, String(odd));
  }
  assert.equal(labelOf("paused"), "paused");
  assert.equal(labelOf("constructor"), "constructor");
});

test("the header counts every state, each once, done first and never-run last", () => {
  assert.deepEqual([...COUNT_ORDER].sort(), [...NAMES].sort());
  assert.deepEqual(COUNT_ORDER, ["succeeded", "cached", "running", "queued", "failed", "skipped",
    "cancelled", "idle"]);
});

test("every state has its own icon; an unknown state is drawn as not run", () => {
  const icons = NAMES.map(iconOf);
  assert.equal(new Set(icons).size, NAMES.length);
  assert.ok(icons.every((svg) => svg.startsWith("<circle ")));
  assert.match(iconOf(STATE.running), /class="spin"/);
  assert.equal(iconOf("paused"), iconOf(STATE.idle));
  assert.equal(iconOf("toString"), iconOf(STATE.idle));
});

test("a patch merges into the view's copy field by field", () => {
  const steps = {
    load: { state: "succeeded", started: 1, finished: 2 },
    fit: { state: "running", started: 2, done: 1, total: 4 },
  };
  const changed = mergePatch(steps, { fit: { done: 3 }, new: { state: "queued" } });
  assert.deepEqual(changed, ["fit", "new"]);
  assert.deepEqual(steps, {
    load: { state: "succeeded", started: 1, finished: 2 },
    fit: { state: "running", started: 2, done: 3, total: 4 },
    new: { state: "queued" },
  });
  assert.deepEqual(mergePatch(steps, undefined), []);
});
