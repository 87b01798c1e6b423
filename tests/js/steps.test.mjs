// What a node, the header and the panel show, as the widget formats it in the browser.
import assert from "node:assert/strict";
import { test } from "node:test";

import { logic } from "./load_widget.mjs";

const { fmtDuration, clip, shortRun, stepDuration, stepSubtitle, stepTooltip, progress,
  countsText, headerOf, panelFacts, errorSummary, logSection, linesDropped } = logic;

test("durations: tenths under a minute, then minutes and seconds, then hours and minutes", () => {
  assert.equal(fmtDuration(0), "0.0s");
  assert.equal(fmtDuration(0.4), "0.4s");
  assert.equal(fmtDuration(12.345), "12.3s");
  assert.equal(fmtDuration(65), "1m 05s");
  assert.equal(fmtDuration(65.4), "1m 05s");
  assert.equal(fmtDuration(599.6), "10m 00s");
  assert.equal(fmtDuration(3600), "1h 00m");
  assert.equal(fmtDuration(3725), "1h 02m");
  assert.equal(fmtDuration(90061), "25h 01m");
  for (const none of [null, undefined, NaN, Infinity]) assert.equal(fmtDuration(none), "");
});

test("clip and shortRun", () => {
  assert.equal(clip("train, test", 26), "train, test");
  assert.equal(clip("abcdefghij", 5), "abcd…");
  assert.equal(clip(null, 5), "");
  assert.equal(shortRun("20240501-101500-ab12cd"), "ab12cd");
  assert.equal(shortRun(null), "");
});

test("a step's duration: to its end, or to `now` while it runs", () => {
  assert.equal(stepDuration({ started: 100, finished: 165 }, 999), 65);
  assert.equal(stepDuration({ started: 100, finished: null }, 100.5), 0.5);
  assert.equal(stepDuration({ started: null }, 100), null);
  assert.equal(stepDuration(undefined, 100), null);
});

test("a node's subtitle in each state", () => {
  const now = 100.4;
  const sub = (rec, outputs) => stepSubtitle(rec, outputs, now);
  assert.equal(sub({ state: "idle" }, ["train", "test"]), "→ train, test");
  assert.equal(sub({ state: "idle" }, []), "no outputs");
  assert.equal(sub({ state: "idle" }, undefined), "no outputs");
  assert.equal(sub({ state: "queued" }), "queued");
  assert.equal(sub({ state: "running", started: 100, done: 2, total: 5, attempt: 1 }),
    "2/5 cells · 0.4s");
  assert.equal(sub({ state: "running", started: 100, total: 0, attempt: 2 }), "running · 0.4s · try 2");
  assert.equal(sub({ state: "succeeded", started: 100, finished: 165 }), "succeeded · 1m 05s");
  assert.equal(sub({ state: "failed", started: 100, finished: 100.4 }), "failed · 0.4s");
  assert.equal(sub({ state: "cached", reused_from: "20240501-101500-ab12cd" }), "reused from …ab12cd");
  assert.equal(sub({ state: "cached" }), "cached");
  assert.equal(sub({ state: "skipped", reason: "upstream `train` failed" }), "skipped · `train` failed");
  assert.equal(sub({ state: "cancelled", reason: null }), "cancelled");
  assert.equal(sub({ state: "paused", started: 100 }), "paused · 0.4s");
});

test("a node's tooltip and progress bar", () => {
  assert.equal(stepTooltip("load", { state: "idle" }), "load: not run");
  assert.equal(stepTooltip("fit", { state: "failed", error: "E: v", reason: "code changed" }),
    "fit: failed\nE: v");
  assert.equal(stepTooltip("fit", { state: "skipped", reason: "upstream `a` failed" }),
    "fit: skipped\nupstream `a` failed");
  assert.equal(progress({ state: "running", done: 3, total: 4 }), 0.75);
  assert.equal(progress({ state: "running", done: 0, total: 0 }), 0);
  assert.equal(progress({ state: "succeeded", done: 4, total: 4 }), 0);
});

test("the header's counts: in COUNT_ORDER, zero counts left out", () => {
  assert.equal(countsText(["queued", "succeeded", "idle", "succeeded", "running", "cached"]),
    "2 succeeded · 1 cached · 1 running · 1 queued · 1 not run");
  assert.equal(countsText(["cancelled", "failed", "skipped", "skipped"]),
    "1 failed · 2 skipped · 1 cancelled");
  assert.equal(countsText([]), "");
});

test("the header of a pipeline that never ran", () => {
  const h = headerOf({ id: null, state: "idle" }, { title: "" }, ["idle", "idle"], 0);
  assert.deepEqual(h, {
    state: "idle", badge: "not run", title: "pipeline", counts: "2 not run",
    cancel: { hidden: true, disabled: false, text: "Cancel" },
    retry: { hidden: true, disabled: true, text: "Retry failed" },
    note: "", warn: false,
  });
  assert.equal(headerOf({}, {}, [], 0).state, "idle");
});

test("the header of a live run: Cancel, the elapsed time, the latest run-level line", () => {
  const run = { id: "r1", state: "running", started: 100, finished: null, log: "building image" };
  const h = headerOf(run, { title: "wine" }, ["succeeded", "running", "queued"], 165);
  assert.equal(h.badge, "running");
  assert.equal(h.title, "wine · run r1");
  assert.equal(h.counts, "1 succeeded · 1 running · 1 queued · 1m 05s");
  assert.deepEqual(h.cancel, { hidden: false, disabled: false, text: "Cancel" });
  assert.equal(h.retry.hidden, true);
  assert.equal(h.note, "building image");
  assert.equal(h.warn, false);
  const waiting = headerOf({ ...run, waiting: true, cancelling: true }, {}, [], 165);
  assert.match(waiting.note, /^The kernel is waiting for this run: interrupt the kernel/);
  assert.deepEqual(waiting.cancel, { hidden: false, disabled: true, text: "Cancelling…" });
  assert.equal(headerOf({ ...run, error: "retry failed: boom" }, {}, [], 165).note,
    "retry failed: boom");
});

test("the header of a finished run: Retry failed when something can run again", () => {
  const run = { id: "r2", state: "failed", started: 100, finished: 100.4, reason: "1 step failed",
    can_retry: true, log: "not shown once the run is over" };
  const h = headerOf(run, {}, ["succeeded", "failed"], 999);
  assert.equal(h.counts, "1 succeeded · 1 failed · 0.4s");
  assert.equal(h.cancel.hidden, true);
  assert.deepEqual(h.retry, { hidden: false, disabled: false, text: "Retry failed" });
  assert.equal(h.note, "1 step failed");
  assert.equal(h.warn, true);
  const retrying = headerOf({ ...run, retrying: true }, {}, [], 999);
  assert.deepEqual(retrying.retry, { hidden: false, disabled: true, text: "Retrying…" });
  const done = headerOf({ ...run, state: "succeeded", can_retry: false, reason: null }, {}, [], 0);
  assert.equal(done.retry.hidden, true);
  assert.equal(done.warn, false);
  assert.equal(headerOf({ ...run, state: "cancelled" }, {}, [], 0).warn, true);
});

test("the panel's facts about a running step", () => {
  const d = { step: "fit", state: "running", started: 100, finished: null, done: 2, total: 5,
    attempt: 2, reason: "code changed", error: null, outputs: { model: "m.pkl" } };
  assert.deepEqual(panelFacts(d, 100.4), [
    ["Duration", "0.4s"], ["Progress", "2/5 cells"], ["Attempt", "2"],
    ["Ran because", "code changed"], ["Outputs", "model"],
  ]);
});

test("the panel's facts about cached, failed, skipped and idle steps", () => {
  const cached = { state: "cached", started: 1, finished: 2, reason: "inputs unchanged", attempt: 1 };
  assert.deepEqual(panelFacts(cached, 9), [["Cache", "inputs unchanged"]]);
  assert.deepEqual(panelFacts({ ...cached, reason: null }, 9), [["Cache", "reused"]]);
  const failed = { state: "failed", started: 100, finished: 165, attempt: 2, reason: "code changed",
    error: "RuntimeError: down" };
  assert.deepEqual(panelFacts(failed, 999), [["Duration", "1m 05s"], ["Tries", "failed 2 times"]]);
  const skipped = { state: "skipped", started: 5, finished: 5, reason: "upstream `train` failed" };
  assert.deepEqual(panelFacts(skipped, 9), [["Duration", "0.0s"], ["Why", "upstream `train` failed"]]);
  assert.deepEqual(panelFacts({ state: "idle", reason: "never ran" }, 9), []);
});

test("a step's error: its exception, where it happened, the traceback without its rule", () => {
  const error = {
    message: "step `train` failed in the step code, line 3: RuntimeError: the data server is down",
    ename: "RuntimeError", evalue: "the data server is down",
    traceback: `${"-".repeat(75)}\nRuntimeError  Traceback (most recent call last)\n`,
  };
  assert.deepEqual(errorSummary(error), {
    head: "RuntimeError: the data server is down", where: "in the step code, line 3",
    trace: "RuntimeError  Traceback (most recent call last)\n",
  });
  assert.deepEqual(errorSummary({ ename: "KeyError", evalue: "'x'", message: "boom", cell: "cell 2" }),
    { head: "KeyError: 'x'", where: "in cell 2", trace: null });
  assert.equal(errorSummary({ ename: "E", message: "no place named" }).where, "no place named");
  assert.deepEqual(errorSummary({ message: "the kernel died" }),
    { head: "the kernel died", where: null, trace: null });
});

test("the panel's log: the tail the kernel sent, or why there is none", () => {
  assert.deepEqual(logSection({ state: "running", log: ["a", "b"] }), { title: "Log", text: "a\nb" });
  const tail = Array.from({ length: 40 }, (_, i) => `line ${i}`);
  assert.equal(logSection({ state: "running", log: tail }).title, "Log (last 40 lines)");
  assert.equal(logSection({ state: "running", log: [] }).text, "(no output yet)");
  assert.equal(logSection({ state: "succeeded" }).text, "(the step printed nothing)");
});

test("a newer log tail: how many of the old tail's first lines it dropped", () => {
  const tail = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}`);
  assert.equal(linesDropped(tail(1, 30), tail(1, 35)), 0); // appended to
  assert.equal(linesDropped(tail(1, 30), tail(1, 30)), 0); // the same (a state change)
  assert.equal(linesDropped(tail(1, 40), tail(6, 45)), 5); // the tail slid
  assert.equal(linesDropped(tail(1, 40), tail(41, 80)), 40); // nothing left in common
  assert.equal(linesDropped([], tail(1, 3)), 0);
  assert.equal(linesDropped(tail(1, 3), []), 3); // a new attempt, no output yet
  // repeated lines: the smallest shift that fits
  assert.equal(linesDropped([".", ".", "a"], [".", "a", "b"]), 1);
  assert.equal(linesDropped([".", "."], [".", ".", "."]), 0);
});

test("a fan-out step shows mini-batches and failures, other steps their cells", () => {
  const running = { state: "running", started: 0, done: 37, total: 100, attempt: 1 };
  assert.equal(logic.progressOf({ ...running, failed: 1 }), "37/100 batches · 1 failed");
  assert.equal(logic.progressOf({ ...running, failed: 0 }), "37/100 batches");
  assert.equal(logic.progressOf({ ...running, failed: null }), "37/100 cells");
  assert.match(stepSubtitle({ ...running, failed: 1 }, [], 5), /^37\/100 batches · 1 failed · /);
  assert.match(stepSubtitle({ ...running, failed: null }, [], 5), /^37\/100 cells · /);
});

test("a fan-out step's failed mini-batches as the panel lists them", () => {
  const { failureRows } = logic;
  const rows = failureRows([
    { batch: 1, items: [5, 9], ename: "ValueError", evalue: "bad batch 5\nmore", line: 2,
      traceback: "-".repeat(75) + "\nValueError: bad batch 5" },
    { batch: 4, items: [20, 20], ename: "TimeoutError", evalue: "item 20 timed out", line: null,
      traceback: null },
  ]);
  assert.deepEqual(rows, [
    { batch: 1, items: "5-9", text: "items 5-9: ValueError: bad batch 5 (line 2)",
      trace: "ValueError: bad batch 5" },
    { batch: 4, items: "20", text: "item 20: TimeoutError: item 20 timed out", trace: null },
  ]);
  assert.deepEqual(failureRows(undefined), []);
});
