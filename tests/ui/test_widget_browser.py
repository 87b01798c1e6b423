"""The DAG widget in a real JupyterLab and a real Chromium (Debian's), notebooks run from the page.

Proves: the widget's ES module loads from the package with no extra install (ipywidgets' and
anywidget's labextensions still served with fresh config/data dirs); the wine example drives it
live to the final state; a click shows a step's log, error and executed notebook (opened in a
JupyterLab tab through mlpipe's extension although `.mlpipe/` is hidden, or a plain link where
the extension is not loaded and the server serves `.mlpipe/`); Retry failed and
Cancel work through the page; a 200-step run streams in without long frames. Screenshots go to
test-artifacts/.

What the page shows is checked with Playwright's `expect(...)`, which waits until it holds
(tests/ui/conftest.py sets a generous timeout); a bare `count()` or `inner_text()` reads the
page at one instant and may read it before it got there.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import wait_for, write_notebook
from tests.ui.browserkit import NODE, run_all_cells

pytestmark = pytest.mark.browser

STEPS = ("load", "split", "fit", "evaluate")
# what opening a notebook with a kernel asks the server for
KERNEL_API = re.compile(r"/api/(sessions|kernels)(/|$)")


def _kernel_count(lab) -> int:
    with urllib.request.urlopen(f"{lab.url}/api/kernels?token={lab.token}", timeout=10) as r:
        return len(json.load(r))


class _Requests:
    """The HTTP requests the pages of a browser context make from now on (websockets aside)."""

    def __init__(self, context) -> None:
        self.made: list[tuple[str, str]] = []
        self._open: set[object] = set()
        self._last = time.monotonic()
        context.on("request", self._started)
        context.on("requestfinished", self._ended)
        context.on("requestfailed", self._ended)

    def _started(self, request) -> None:
        self.made.append((request.method, urllib.parse.urlsplit(request.url).path))
        self._open.add(request)
        self._last = time.monotonic()

    def _ended(self, request) -> None:
        self._open.discard(request)
        self._last = time.monotonic()

    def wait_quiet(self, page, quiet: float = 1.0, timeout: float = 60) -> None:
        """Until no request is in flight and none started for `quiet` s (Playwright's
        networkidle, from any moment on): whatever opening a document set off has been asked."""
        deadline = time.monotonic() + timeout
        while self._open or time.monotonic() - self._last < quiet:
            assert time.monotonic() < deadline, f"the page never went quiet: {self._open}"
            page.wait_for_timeout(50)  # Playwright delivers the page's events meanwhile

    def kernel_starts(self) -> list[tuple[str, str]]:
        """Requests that would start or change a kernel (a session is made with one)."""
        return [(m, path) for m, path in self.made
                if m in ("POST", "PATCH") and KERNEL_API.search(path)]


def _assert_kernel_less(page, requests: _Requests, lab, kernels: int) -> None:
    """A record opened without a kernel: once its page is quiet, it asked for none and the
    server runs as many kernels as before."""
    requests.wait_quiet(page)
    assert requests.kernel_starts() == []
    assert _kernel_count(lab) == kernels


def test_wine_example_runs_live_in_jupyterlab(lab, page, artifacts):
    started = time.monotonic()
    page.goto(lab.tree("examples/wine_quality.ipynb", "wine"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    # fresh JUPYTER_CONFIG_DIR/JUPYTER_DATA_DIR still leave the venv's sys-prefix
    # labextensions on the path: ipywidgets' manager and anywidget are served
    config = json.loads(page.locator("#jupyter-config-data").text_content())
    served = {ext["name"] for ext in config["federated_extensions"]}
    assert {"@jupyter-widgets/jupyterlab-manager", "anywidget"} <= served
    run_all_cells(page, lab)

    widget = page.locator(".mlpipe-dag")
    widget.first.wait_for(timeout=120_000)
    # one widget: the handle returned by the magic and `run` on the next line do not repeat it
    expect(widget).to_have_count(1)
    page.wait_for_function(
        "document.querySelectorAll(\"rect.mp-box[data-state='succeeded']\").length === 4",
        timeout=300_000)
    for step in STEPS:
        expect(page.locator(NODE.format(step))).to_have_attribute("data-state", "succeeded")
    expect(widget.locator(".mp-header .mp-badge")).to_have_text("succeeded")
    expect(widget.locator(".mp-counts")).to_contain_text("4 succeeded")
    # edges carry their artifacts' names
    expect(widget.locator(".mp-edge-label")).to_have_count(4)
    labels = widget.locator(".mp-edge-label").all_text_contents()
    assert sorted(labels) == ["model", "raw", "test", "train"]
    # the last cell waits for the run and reads its metrics back: no error anywhere
    page.wait_for_function(
        "[...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]"
        ".every(p => /\\[\\d+\\]/.test(p.textContent))", timeout=120_000)
    expect(page.locator(".jp-OutputArea-output[data-mime-type*='error']")).to_have_count(0)
    expect(page.locator(".jp-Cell").last).to_contain_text("accuracy")

    # click a node: its panel with the log tail and the executed notebook
    page.locator(NODE.format("fit")).click()
    panel = widget.locator(".mp-panel")
    expect(panel).to_be_visible()
    expect(panel.locator(".mp-panel-head b")).to_have_text("fit")
    expect(panel.locator(".mp-log")).to_contain_text("attempt 1 of 2")
    record = re.compile(r"\.mlpipe/runs/([\w-]+)/fit/output\.ipynb$")
    expect(panel.locator(".mp-path")).to_have_text(record)
    path = panel.locator(".mp-path").inner_text()
    run_dir = record.search(path)
    assert run_dir, path
    assert Path(path).is_file() and Path(path).is_relative_to(lab.root / "examples")
    expect(page.locator(NODE.format("fit"))).to_have_class(re.compile(r"(^|\s)selected(\s|$)"))
    page.mouse.move(0, 0)  # no hover outline in the picture
    widget.screenshot(path=str(artifacts / "widget.png"))
    page.screenshot(path=str(artifacts / "jupyterlab.png"))

    # this server hides dot-folders (jupyter_server's default); mlpipe's JupyterLab extension
    # opens the record anyway, read-only, in a tab of this page, without starting a kernel
    kernels = _kernel_count(lab)
    requests = _Requests(page.context)
    panel.locator(".mp-open").click()
    tab = page.locator(".lm-TabBar-tab", has_text="output.ipynb")
    tab.wait_for(timeout=60_000)
    # every step's record is an output.ipynb: the tab says which step it is
    expect(tab.locator(".lm-TabBar-tabLabel")).to_have_text("fit · output.ipynb",
                                                            timeout=60_000)
    executed = page.locator(".jp-NotebookPanel:visible")
    page.wait_for_function(
        "[...document.querySelectorAll('.jp-NotebookPanel')].some(p => p.offsetParent &&"
        " p.textContent.includes('GradientBoostingClassifier('))", timeout=60_000)
    expect(executed).to_contain_text("Step fit of pipeline wine_quality")
    expect(executed).to_contain_text("load_input")
    expect(executed.locator(".jp-OutputArea-output").first).to_be_attached()  # outputs kept
    # read-only: JupyterLab's label in the notebook's toolbar, and Save is disabled
    expect(executed.get_by_text("notebook is read-only")).to_have_count(1)
    expect(executed.locator("[data-jp-item-name='save'] .jp-ToolbarButtonComponent")
           ).to_have_attribute("aria-disabled", "true")
    expect(executed.locator("[data-jp-item-name='kernelName']")).to_have_text("No Kernel")
    expect(page.locator(".mp-hint")).to_have_count(0)
    expect(tab).to_have_attribute("title", re.compile(re.escape(
        f"mlpipe:examples/.mlpipe/runs/{run_dir[1]}/fit/output.ipynb")))
    _assert_kernel_less(page, requests, lab, kernels)  # a record is read, never run
    page.screenshot(path=str(artifacts / "executed-notebook.png"))
    # ipywidgets' manager reads `session.kernel` of every notebook it sees, kernel-less ones
    # included (jupyterlab-manager 3.0.x): its rejection is the only error the tab may cause
    page.errors[:] = [e for e in page.errors  # type: ignore[attr-defined]
                      if not ("reading 'kernel'" in e and "jupyterlab-manager" in e)]
    assert page.errors == []  # type: ignore[attr-defined]
    print(f"browser test: {time.monotonic() - started:.1f}s from page load to screenshot")


def _states(page) -> dict[str, str]:
    return page.evaluate("Object.fromEntries([...document.querySelectorAll('g.mp-node')]"
                         ".map(g => [g.dataset.step, g.dataset.state]))")


def _wait_states(page, expected: dict[str, str], timeout: float = 240) -> None:
    wait_for(lambda: _states(page) == expected,
             lambda: f"the widget's states {expected} (it shows {_states(page)})", timeout,
             every=0.25)


def test_failed_step_shows_its_error_and_retry_failed_reruns_it(lab, page, artifacts):
    flag = lab.root / "data-server-up"
    write_notebook(lab.root / "retry.ipynb", [
        "%load_ext mlpipe_jupyter",
        "%%step prepare --outputs data\ndata = list(range(10))",
        "%%step train --inputs data --outputs model --no-run\nimport os\n"
        f"if not os.path.exists({str(flag)!r}):\n"
        "    raise RuntimeError('the data server is down')\nmodel = sum(data)",
        "%%step report --inputs model --outputs summary --no-run\nsummary = f'model={model}'",
        "%%step stats --inputs data --outputs mean --no-run\nmean = sum(data) / len(data)",
        "run = %pipeline run\nrun",
    ])
    page.goto(lab.tree("retry.ipynb", "retry"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    run_all_cells(page, lab)
    _wait_states(page, {"prepare": "succeeded", "train": "failed", "report": "skipped",
                        "stats": "succeeded"})
    widget = page.locator(".mlpipe-dag")
    expect(page.locator(NODE.format("report"))).to_contain_text("skipped · `train` failed")
    page.locator(NODE.format("train")).click()
    expect(widget.locator(".mp-error-head")).to_have_text("RuntimeError: the data server is down")
    expect(widget.locator(".mp-error-msg")).to_have_text("in the step code, line 3")
    widget.locator(".mp-error summary").click()  # the traceback unfolds
    expect(widget.locator(".mp-error pre")).to_contain_text("RuntimeError")
    retry = widget.locator(".mp-retry")
    # the run ends a moment after its last step (the executor releases its kernels)
    expect(retry).to_be_visible()
    expect(retry).to_be_enabled()
    expect(widget.locator(".mp-header .mp-badge")).to_have_text("failed")
    expect(widget.locator(".mp-cancel")).to_be_hidden()  # the run is over
    page.mouse.move(0, 0)
    widget.screenshot(path=str(artifacts / "widget-failed.png"))

    flag.write_text("")
    retry.click()
    # the same widget follows the new run: what succeeded is reused, the rest runs again
    _wait_states(page, {"prepare": "cached", "train": "succeeded", "report": "succeeded",
                        "stats": "cached"})
    page.wait_for_function(
        "document.querySelector('.mlpipe-dag .mp-header .mp-badge').textContent === 'succeeded'",
        timeout=60_000)
    expect(widget.locator(".mp-error")).to_have_count(0)
    expect(widget.locator(".mp-panel-head .mp-badge")).to_have_text("succeeded")
    expect(page.locator(NODE.format("prepare"))).to_contain_text("reused from")
    page.mouse.move(0, 0)
    widget.screenshot(path=str(artifacts / "widget-retried.png"))
    assert page.errors == []  # type: ignore[attr-defined]


def test_cancel_button_stops_a_running_step(lab, page, artifacts):
    gate = lab.root / "never"
    write_notebook(lab.root / "cancel.ipynb", [
        "%load_ext mlpipe_jupyter",
        "%%step prepare --outputs data\ndata = list(range(5))",
        "%%step slow --inputs data --outputs total --no-run\nimport os, time\n"
        f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.1)\ntotal = sum(data)",
        "%%step after --inputs total --outputs line --no-run\nline = str(total)",
        "run = %pipeline run\nrun",
        "6 * 7",
    ])
    page.goto(lab.tree("cancel.ipynb", "cancel"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    run_all_cells(page, lab)
    _wait_states(page, {"prepare": "succeeded", "slow": "running", "after": "queued"})
    slow = page.locator(NODE.format("slow"))
    # the running step shows its progress; the kernel ran the next cell meanwhile
    page.wait_for_function(
        "/\\d\\/\\d cells/.test(document.querySelector(\"g.mp-node[data-step='slow']\")"
        ".textContent)", timeout=60_000)
    last_cell = page.locator(".jp-CodeCell").last
    expect(last_cell.locator(".jp-InputArea-prompt")).to_contain_text("[6]")
    expect(last_cell).to_contain_text("42")
    widget = page.locator(".mlpipe-dag")
    page.mouse.move(0, 0)
    widget.screenshot(path=str(artifacts / "widget-running.png"))

    widget.locator(".mp-cancel").click()
    _wait_states(page, {"prepare": "succeeded", "slow": "cancelled", "after": "cancelled"},
                 timeout=120)
    page.wait_for_function(
        "document.querySelector('.mlpipe-dag .mp-header .mp-badge').textContent === 'cancelled'",
        timeout=60_000)
    expect(slow).to_contain_text("cancelled")
    expect(widget.locator(".mp-retry")).to_be_enabled()  # cancelled steps can be run again
    assert page.errors == []  # type: ignore[attr-defined]


BIG_RUN = [
    '''import random, threading, time
from pathlib import Path
from mlpipe_jupyter.model.dag import build_dag
from mlpipe_jupyter.model.spec import PipelineSpec, StepSpec
from mlpipe_jupyter.ui.widget import DagWidget, RunFeed

rng = random.Random(1)
steps = []
for i in range(200):  # each step reads up to two outputs of the 15 steps before it
    inputs = sorted(f"v{j}" for j in rng.sample(range(max(i - 15, 0), i), min(i, 2)))
    steps.append(StepSpec(name=f"s{i:03d}", code="", inputs=tuple(inputs), outputs=(f"v{i}",)))
graph = build_dag(PipelineSpec(steps=tuple(steps)))
order = list(graph)
w = DagWidget(graph, order=order, title="200 steps")
feed = RunFeed(w, "r200", order, base_dir=Path.cwd(), runs_dir=Path.cwd() / ".mlpipe" / "runs")
w.attach(feed)
w''',
    '''def replay():  # the events of a fast 200-step run: ~2800 in ~5 s
    while not w.selected:  # starts when a node is clicked: the view is drawn and answers
        time.sleep(0.05)
    feed.on_run_started(run_id="r200", notebook="", params={}, steps=order, executor="local",
                        started=time.time())
    for name in order:
        feed.on_step_state(step=name, state="running", at=time.time())
        for done in range(1, 7):
            time.sleep(0.003)
            feed.on_step_progress(step=name, done=done, total=6)
            feed.on_step_log(step=name, line=f"{name}: cell {done} done")
        feed.on_step_state(step=name, state="succeeded", at=time.time())
    feed.on_run_finished(state="succeeded", at=time.time())

threading.Thread(target=replay, daemon=True).start()''',
]

PAGE_PROBES = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.__longTasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });
window.__running = new Set();  // steps the page showed as running, however briefly
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.matches?.("rect.mp-box[data-state='running']")) {
      window.__running.add(r.target.dataset.step);
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
"""


def test_200_step_run_stays_responsive(lab, page, artifacts):
    write_notebook(lab.root / "big.ipynb", BIG_RUN)
    page.add_init_script(PAGE_PROBES)
    page.goto(lab.tree("big.ipynb", "big"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    run_all_cells(page, lab)
    page.wait_for_function("document.querySelectorAll('g.mp-node').length === 200",
                           timeout=120_000)
    drawn = page.evaluate("performance.now()")
    page.locator(NODE.format("s000")).click()  # starts the replay
    page.wait_for_function(
        "document.querySelectorAll(\"rect.mp-box[data-state='succeeded']\").length === 200",
        timeout=180_000)
    finished = page.evaluate("performance.now()")
    badge = ".mlpipe-dag .mp-header .mp-badge"
    page.wait_for_function(f"document.querySelector('{badge}').textContent === 'succeeded'",
                           timeout=60_000)
    expect(page.locator(".mlpipe-dag .mp-counts")).to_contain_text("200 succeeded")
    # the page kept up: no long frame while the updates streamed in
    tasks = page.evaluate("window.__longTasks")
    during = [d for start, d in tasks if drawn <= start <= finished]
    seen_running = page.evaluate("window.__running.size")
    # a click still answers at once: the panel needs a round trip to the kernel
    t0 = time.monotonic()
    page.locator(NODE.format("s150")).click()
    page.wait_for_function(
        "(document.querySelector('.mlpipe-dag .mp-log') || {}).textContent"
        "?.includes('s150: cell 6 done')", timeout=30_000)
    click = time.monotonic() - t0
    print(f"\n200 steps in the browser: updates over {(finished - drawn) / 1000:.1f}s, "
          f"{len(during)} long tasks (max {max(during, default=0):.0f} ms), "
          f"panel after a click in {click:.2f}s, {seen_running} steps seen running")
    assert max(during, default=0) < 500
    assert seen_running >= 5  # live, not only the final state
    assert click < 10
    page.mouse.move(0, 0)
    page.locator(".mlpipe-dag").screenshot(path=str(artifacts / "widget-200.png"))
    assert page.errors == []  # type: ignore[attr-defined]


def test_without_the_lab_extension_the_link_opens_a_served_record(lab_showing_hidden, page,
                                                                   artifacts):
    """Where mlpipe's JupyterLab extension is not loaded but the server serves `.mlpipe/`, the
    link is a plain JupyterLab URL in a new tab."""
    lab = lab_showing_hidden
    write_notebook(lab.root / "link.ipynb", [
        "%load_ext mlpipe_jupyter",
        "%%step hello --outputs greeting --no-run\ngreeting = 'hello from a step'\n"
        "print(greeting)",
        "run = %pipeline run\nrun",
    ])
    page.goto(lab.tree("link.ipynb", "link"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    config = json.loads(page.locator("#jupyter-config-data").text_content())
    assert "mlpipe-jupyter" in config["disabledExtensions"]
    run_all_cells(page, lab)
    _wait_states(page, {"hello": "succeeded"})
    # the panel asks the contents API whether the server serves the record (the widget's
    # probe): it does here, so the link stays
    with page.expect_response(lambda r: "/api/contents/" in r.url and "content=0" in r.url,
                              timeout=60_000) as probe:
        page.locator(NODE.format("hello")).click()
    assert probe.value.status == 200, probe.value.url
    link = page.locator(".mlpipe-dag .mp-open")
    expect(page.locator(".mlpipe-dag .mp-log")).to_have_text("hello from a step")
    expect(link).to_have_attribute("href", re.compile(
        r"^/lab/workspaces/link/tree/\.mlpipe/runs/[\w-]+/hello/output\.ipynb$"))
    expect(link).to_be_visible()
    expect(page.locator(".mlpipe-dag .mp-hint")).to_have_count(0)
    with page.context.expect_page(timeout=30_000) as opened:
        link.click()
    executed = opened.value
    executed.wait_for_selector(".jp-Notebook", timeout=90_000)
    executed.wait_for_function(
        "document.querySelector('.jp-Notebook')?.textContent.includes('hello from a step')",
        timeout=60_000)
    assert executed.url.split("?")[0].endswith("/hello/output.ipynb")
    expect(executed.locator(".lm-TabBar-tabLabel", has_text="output.ipynb").first).to_be_visible()
    executed.screenshot(path=str(artifacts / "executed-notebook-plain-link.png"))


def test_notebook7_renders_the_widget_and_opens_a_record(notebook7, page, artifacts):
    """Notebook 7, no extra install: the widget renders from the package's ES module, and the
    executed notebook opens, read-only, through mlpipe's extension, in a new browser tab as
    Notebook 7 opens every document."""
    lab = notebook7
    write_notebook(lab.root / "nb7.ipynb", [
        "%load_ext mlpipe_jupyter",
        "%%step hello --outputs greeting --no-run\ngreeting = 'hello from a step'\n"
        "print(greeting)",
        "%%step shout --inputs greeting --outputs loud --no-run\nloud = greeting.upper()",
        "run = %pipeline run\nrun",
    ])
    page.goto(f"{lab.url}/notebooks/nb7.ipynb?token={lab.token}")
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    run_all_cells(page, lab)
    _wait_states(page, {"hello": "succeeded", "shout": "succeeded"})
    widget = page.locator(".mlpipe-dag")
    expect(widget.locator(".mp-edge-label")).to_have_text(["greeting"])
    page.locator(NODE.format("hello")).click()
    link = widget.locator(".mp-open")
    link.wait_for(timeout=30_000)
    page.mouse.move(0, 0)
    widget.screenshot(path=str(artifacts / "widget-notebook7.png"))
    kernels = _kernel_count(lab)
    requests = _Requests(page.context)
    with page.context.expect_page(timeout=30_000) as opened:
        link.click()
    executed = opened.value
    executed.wait_for_function(
        "document.querySelector('.jp-Notebook')?.textContent.includes('hello from a step')",
        timeout=90_000)
    assert "/notebooks/mlpipe:.mlpipe/runs/" in urllib.parse.unquote(executed.url)
    # Notebook 7.6 says so as JupyterLab does, in the notebook's toolbar (the label comes a
    # moment after the cells), with Save disabled and no kernel named
    toolbar = executed.locator(".jp-NotebookPanel-toolbar")
    expect(toolbar.locator("[data-jp-item-name='read-only-indicator']")).to_have_text(
        "notebook is read-only")
    expect(executed.get_by_text("notebook is read-only")).to_have_count(1)
    expect(toolbar.locator("[data-jp-item-name='save'] .jp-ToolbarButtonComponent")
           ).to_have_attribute("aria-disabled", "true")
    expect(toolbar.locator("[data-jp-item-name='kernelName']")).to_have_text("No Kernel")
    _assert_kernel_less(executed, requests, lab, kernels)  # a record is read, never run
    executed.screenshot(path=str(artifacts / "executed-notebook-notebook7.png"))
    # Notebook 7.6 itself rejects a settings load at start-up ("reading 'schema'", with or
    # without mlpipe's extension): any other error fails the test, and none may be mlpipe's
    assert not any("mlpipe" in e for e in page.errors)  # type: ignore[attr-defined]
    assert [e for e in page.errors  # type: ignore[attr-defined]
            if "reading 'schema'" not in e] == []
