"""A step's log in the widget's panel, in a real JupyterLab and Chromium, as lines stream in: a
user who scrolled up to read keeps their place (also when the 40-line tail drops its oldest
lines), and one at the bottom keeps seeing the newest line.

The lines come from a replay in the notebook's kernel (RunFeed fed by a thread, as
test_widget_browser.py's 200-step run), one batch each time the test writes a file, so the
test scrolls between batches without racing the kernel.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import wait_for, write_notebook
from tests.ui.browserkit import NODE, run_all_cells

pytestmark = pytest.mark.browser

FIRST = 30  # lines printed at once, more than the log's height shows
BATCHES = (5, 10, 5)  # then a batch per file more-<n>; the second fills the tail past 40 lines

CELLS = [
    '''import os, threading, time
from pathlib import Path
from mlpipe_jupyter.model.dag import build_dag
from mlpipe_jupyter.model.spec import PipelineSpec, StepSpec
from mlpipe_jupyter.ui.widget import DagWidget, RunFeed

graph = build_dag(PipelineSpec(steps=(StepSpec(name="talk", code="", outputs=("said",)),)))
w = DagWidget(graph, order=["talk"], title="a talkative step")
feed = RunFeed(w, "rlog", ["talk"], base_dir=Path.cwd(), runs_dir=Path.cwd() / ".mlpipe" / "runs")
w.attach(feed)
w''',
    f'''def talk():  # starts when the node is clicked: its panel is open
    while w.selected != "talk":
        time.sleep(0.05)
    feed.on_run_started(run_id="rlog", steps=["talk"], executor="local", started=time.time())
    feed.on_step_state(step="talk", state="running", at=time.time())
    said = 0
    for n, lines in enumerate(({FIRST}, *{BATCHES!r})):
        while n and not os.path.exists(f"more-{{n}}"):
            time.sleep(0.05)
        for _ in range(lines):
            said += 1
            feed.on_step_log(step="talk", line=f"talk: line {{said:03d}}")

threading.Thread(target=talk, daemon=True).start()''',
]

# where a line of the log is drawn, in pixels below the top of the log's box (null: not there)
LINE_TOP = """(log, text) => {
  const at = log.textContent.indexOf(text);
  if (at < 0) return null;
  const range = document.createRange();
  range.setStart(log.firstChild, at);
  range.setEnd(log.firstChild, at + text.length);
  return range.getBoundingClientRect().top - log.getBoundingClientRect().top;
}"""
# the line drawn across the middle of the log's box
MIDDLE_LINE = """(log) => {
  const box = log.getBoundingClientRect();
  const caret = document.caretRangeFromPoint(box.left + 20, box.top + box.height / 2);
  const text = log.textContent;
  const start = text.lastIndexOf("\\n", caret.startOffset - 1) + 1;
  const end = text.indexOf("\\n", start);
  return text.slice(start, end < 0 ? text.length : end);
}"""
AT_END = "(log) => log.scrollTop + log.clientHeight >= log.scrollHeight - 2"


def _scrolled(page, log, delta: int) -> int:
    """Turn the mouse wheel over the log, as a reader does; its scroll offset once it rests."""
    log.hover()
    before = log.evaluate("(log) => log.scrollTop")
    page.mouse.wheel(0, delta)
    seen = [before]

    def resting() -> bool:
        seen.append(log.evaluate("(log) => log.scrollTop"))
        return seen[-1] != before and seen[-1] == seen[-2]

    wait_for(resting, lambda: f"the log to scroll and rest (offsets {seen[-5:]})", 30, every=0.2)
    return seen[-1]


def test_the_log_keeps_a_readers_place_and_follows_the_end(lab, page):
    write_notebook(lab.root / "logscroll.ipynb", CELLS)
    page.goto(lab.tree("logscroll.ipynb", "logscroll"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    run_all_cells(page, lab)
    page.locator(NODE.format("talk")).click(timeout=120_000)
    log = page.locator(".mlpipe-dag .mp-log")
    expect(log).to_contain_text(f"talk: line {FIRST:03d}")
    # a log opens at its newest line
    wait_for(lambda: log.evaluate(AT_END), "the log to show its last line", 30)
    assert log.evaluate("(log) => log.scrollHeight > log.clientHeight + 100")

    # the reader scrolls up: new lines, appended or pushing the oldest out of the tail, leave
    # the line they read where it was
    offset = _scrolled(page, log, -150)
    reading = log.evaluate(MIDDLE_LINE)
    assert reading.startswith("talk: line "), reading
    top = log.evaluate(LINE_TOP, reading)
    total = FIRST
    for n, lines in enumerate(BATCHES[:2], start=1):
        (lab.root / f"more-{n}").touch()
        total += lines
        expect(log).to_contain_text(f"talk: line {total:03d}")
        where = log.evaluate(LINE_TOP, reading)
        assert where is not None and abs(where - top) <= 1.5, (reading, top, where, offset)
        assert not log.evaluate(AT_END)
    expect(log).not_to_contain_text("talk: line 001")  # the tail dropped its oldest lines

    # back at the bottom, the log follows the end again
    _scrolled(page, log, 5000)
    assert log.evaluate(AT_END)
    (lab.root / "more-3").touch()
    total += BATCHES[2]
    expect(log).to_contain_text(f"talk: line {total:03d}")
    assert log.evaluate(AT_END)
    assert page.errors == []  # type: ignore[attr-defined]
