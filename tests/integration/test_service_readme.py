"""README's "Publish, trigger, schedule" examples, run verbatim against a live `mlpipe serve`
on a copy of the example notebook: the ```sh blocks between `<!-- service-examples -->` and
`<!-- /service-examples -->`, in order, in one bash with MLPIPE_URL and MLPIPE_TOKEN set."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import NOTEBOOKS, ROOT
from tests.integration.servicekit import Service, kill_run_processes

# MLPIPE_README lets the examples be checked before they are in README.md (a draft file)
README = Path(os.environ.get("MLPIPE_README", ROOT / "README.md"))
START, END = "<!-- service-examples -->", "<!-- /service-examples -->"


def examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text, f"{README}: no {START} ... {END} section"
    section = text.split(START, 1)[1].split(END, 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks, f"{README}: no ```sh blocks between the markers"
    return blocks


def test_the_readme_service_examples_run_verbatim(tmp_path: Path):
    blocks = examples()
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NOTEBOOKS / "wine_quality.ipynb", root / "notebooks")
    server = Service(root, secrets.token_hex(16), tmp_path / "serve.log")
    try:
        env = {**os.environ, "MLPIPE_URL": server.url, "MLPIPE_TOKEN": server.token,
               "COLUMNS": "80", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        env.pop("MLPIPE_HOME", None)
        outputs = []
        for block in blocks:
            done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block], cwd=root,
                                  env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{block}\n---\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
        text = "\n".join(outputs)
        assert '"name": "wine", "version": 1' in text
        assert "learning_rat" in text and "did you mean `learning_rate`" in text
        assert re.search(r'"next_run": "\d{4}-\d\d-\d\dT03:00:00(\.000)?\+0[12]:00"', text), text
        runs = server.ok("GET", "runs?pipeline=wine&experiment=nightly")
        assert len(runs) == 2 and {r["source"] for r in runs} == {"rest"}
        rest = [r for r in runs if r["params"]["learning_rate"] == 0.05]
        assert len(rest) == 1
        assert server.wait_run(rest[0]["id"], timeout=300)["state"] == "succeeded"
        cli = [r for r in runs if r["params"]["n_estimators"] == 20]
        assert cli and cli[0]["state"] == "succeeded"  # `mlpipe submit --wait` waited for it
        schedules = server.ok("GET", "schedules")
        assert [(s["cron"], s["timezone"]) for s in schedules] == [("0 3 * * *",
                                                                     "Europe/Berlin")]
    finally:
        server.stop()
        kill_run_processes(root)
