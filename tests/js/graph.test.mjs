// Edges: the path drawn through layout.py's routed points, and the look that follows the states.
import assert from "node:assert/strict";
import { test } from "node:test";

import { logic } from "./load_widget.mjs";

const { edgePath, edgeFlow } = logic;

test("a straight drop is a line", () => {
  assert.equal(edgePath([[120, 64], [120, 150]]), "M120,64L120,150");
});

test("a sideways edge is a cubic with vertical tangents, bending at mid-height", () => {
  assert.equal(edgePath([[0, 0], [40, 100]]), "M0,0C0,50 40,50 40,100");
});

test("a routed edge: one segment per pair of points", () => {
  assert.equal(edgePath([[10, 0], [10, 40], [70, 120], [70, 200]]),
    "M10,0L10,40C10,80 70,80 70,120L70,200");
});

test("an edge's flow follows the step it comes from", () => {
  const cases = [
    ["idle", "idle", "pending"], ["queued", "queued", "pending"], ["running", "queued", "pending"],
    ["succeeded", "queued", "done"], ["succeeded", "running", "active"], ["cached", "running", "active"],
    ["cached", "succeeded", "done"], ["failed", "skipped", "blocked"], ["skipped", "skipped", "blocked"],
    ["cancelled", "cancelled", "blocked"], [undefined, undefined, "pending"], ["paused", "running", "pending"],
  ];
  for (const [source, target, flow] of cases) {
    assert.equal(edgeFlow(source, target), flow, `${source} -> ${target}`);
  }
});
