"""The DAG widget's JavaScript: its own tests (tests/js, node's test runner) and its state table
checked against StepState, so the browser and the kernel cannot disagree on what a state means.

Node is a test requirement like Chromium: missing, these tests fail, they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

from mlpipe_jupyter.model.states import StepState, is_final, is_ok
from mlpipe_jupyter.ui import widget
from tests.conftest import ROOT

JS_TESTS = ROOT / "tests" / "js"
LOADER = JS_TESTS / "load_widget.mjs"
CSS = ROOT / "mlpipe_jupyter" / "ui" / "static" / "dag_widget.css"


def _node() -> str:
    node = shutil.which("node")
    assert node, "node (20 or newer) is needed to test the widget's JavaScript: install nodejs"
    return node


def _widget_export(name: str) -> object:
    """One export of the widget's ES module, as node imports it."""
    script = (f"import {{ widget }} from {json.dumps(LOADER.as_uri())};"
              f"process.stdout.write(JSON.stringify(widget.{name}));")
    done = subprocess.run([_node(), "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_node_runs_the_widget_js_tests():
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))
    assert len(files) >= 4, files
    done = subprocess.run([_node(), "--test", "--test-reporter=tap", *files], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    tally = dict(re.findall(r"^# (tests|pass|fail|skipped|todo|cancelled) (\d+)$", out, re.M))
    assert int(tally["tests"]) >= 30 and tally["pass"] == tally["tests"], tally
    assert tally["fail"] == tally["skipped"] == tally["todo"] == tally["cancelled"] == "0"


def test_js_states_are_step_state_plus_the_widgets_idle():
    states = _widget_export("STATES")
    assert isinstance(states, dict)
    ours = {name for name, info in states.items() if info.get("widgetOnly")}
    assert ours == {widget.IDLE}  # the name widget.py sends for "registered, not run"
    assert set(states) - ours == {s.value for s in StepState}
    for member in StepState:
        info = states[member.value]
        assert (info["final"], info["ok"]) == (member.is_final, member.is_ok), member
        assert (is_final(member.value), is_ok(member.value)) == (member.is_final, member.is_ok)
    assert states[widget.IDLE]["final"] is False and states[widget.IDLE]["ok"] is False
    assert not is_final(widget.IDLE) and not is_ok(widget.IDLE)


def test_every_js_state_has_a_colour_in_the_css():
    css = CSS.read_text(encoding="utf-8")
    for name in _widget_export("STATES"):
        assert re.search(rf"--c-{name}:", css), name
        assert f'.mlpipe-dag [data-state="{name}"] {{ --c: var(--c-{name}); }}' in css, name
