"""The DAG widget's JavaScript: its own tests (tests/js, node's test runner), its state table
checked against StepState, so the browser and the kernel cannot disagree on what a state means,
and the module widget.py sends, joined from the files in static/, loaded as one ES module.

Node is a test requirement like Chromium: missing, these tests fail, they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from mlpipe_jupyter.model.states import StepState, is_final, is_ok
from mlpipe_jupyter.ui import widget
from tests.conftest import ROOT

JS_TESTS = ROOT / "tests" / "js"
LOADER = JS_TESTS / "load_widget.mjs"
STATIC = ROOT / "mlpipe_jupyter" / "ui" / "static"
CSS = STATIC / "dag_widget.css"


def _node() -> str:
    node = shutil.which("node")
    assert node, "node (20 or newer) is needed to test the widget's JavaScript: install nodejs"
    return node


def _node_json(script: str) -> object:
    """What an ES module script run by node writes to stdout, as JSON."""
    done = subprocess.run([_node(), "--input-type=module", "-e", script], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _logic_export(name: str) -> object:
    """One export of the widget's states and pure functions (dag_logic.js), as node imports it."""
    return _node_json(f"import {{ logic }} from {json.dumps(LOADER.as_uri())};"
                      f"process.stdout.write(JSON.stringify(logic.{name}));")


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
    states = _logic_export("STATES")
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
    for name in _logic_export("STATES"):
        assert re.search(rf"--c-{name}:", css), name
        assert f'.mlpipe-dag [data-state="{name}"] {{ --c: var(--c-{name}); }}' in css, name


def test_the_widget_sends_its_parts_joined_into_one_es_module(tmp_path: Path):
    parts = [STATIC / name for name in widget.ESM_PARTS]
    # every script in static/ is a part, and the entry with the default export comes last
    assert sorted(STATIC.glob("*.js")) == sorted(parts)
    texts = [p.read_text(encoding="utf-8") for p in parts]
    esm = widget.DagWidget()._esm
    assert esm == "\n".join(texts)
    for part, text in zip(parts, texts, strict=True):
        assert text.startswith("// The mlpipe DAG widget, part "), part.name  # says how it loads
        assert len(text.splitlines()) <= 450, part.name
        assert not re.search(r"^\s*import\b", text, re.M), part.name  # one module, no imports
        assert ("export default" in text) == (part == parts[-1]), part.name
    assert "https://" not in esm and "http://" not in esm.replace("http://www.w3.org/2000/svg", "")
    # one module as anywidget loads it: it parses, its parts' top-level names do not clash, and
    # loading it touches no `document`; its named exports are the logic part's
    module = tmp_path / "dag_widget.mjs"
    module.write_text(esm, encoding="utf-8")
    script = ("const [all, logic] = await Promise.all(["
              f"import({json.dumps(module.as_uri())}), import({json.dumps(LOADER.as_uri())})]);"
              "process.stdout.write(JSON.stringify({render: typeof all.default.render,"
              " names: Object.keys(all).sort(),"
              " logic: ['default', ...Object.keys(logic.logic)].sort()}));")
    loaded = _node_json(script)
    assert isinstance(loaded, dict)
    assert loaded["render"] == "function"
    assert loaded["names"] == loaded["logic"] and len(loaded["names"]) > 20
