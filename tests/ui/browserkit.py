"""Helpers of the browser tests (a real JupyterLab, tests/ui/conftest.py, and Chromium): where
a step's node is drawn, and running a notebook's cells from the page."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.request

from tests.conftest import wait_for

NODE = "g.mp-node[data-step='{}']"  # a step's node in the DAG, by its name


def kernel_connected(lab) -> bool:
    """A page holds a connection to an idle kernel of the server (its notebook's)."""
    with urllib.request.urlopen(f"{lab.url}/api/sessions?token={lab.token}", timeout=10) as r:
        sessions = json.load(r)
    return any(s["kernel"]["connections"] > 0 and s["kernel"]["execution_state"] == "idle"
               for s in sessions)


def run_all_cells(page, lab) -> None:
    """Run > Run All Cells, once the page's kernel connection is up. A click that lands while
    the connection is still being set up is dropped by JupyterLab, so look for a started cell
    and click again if there is none."""
    wait_for(lambda: kernel_connected(lab), "the notebook's kernel to connect", 120,
             every=0.5)
    first_prompt = page.locator(".jp-CodeCell .jp-InputArea-prompt").first
    for _ in range(4):
        page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        with contextlib.suppress(AssertionError):  # not started: the click was dropped
            wait_for(lambda: re.search(r"\[(\*|\d+)\]", first_prompt.inner_text()),
                     "the first cell to start", 20, every=0.5)
            return
    raise AssertionError("Run All Cells never started the first cell")
