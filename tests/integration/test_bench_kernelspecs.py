"""bench/kernelspecs.py at its smallest: it runs, both specs' step kernels are forked, and it
reports their ratio (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_the_kernelspec_side_by_side_runs():
    done = subprocess.run([sys.executable, "bench/kernelspecs.py", "--reps", "1", "--warmup",
                           "0", "--chain", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "current, shipped: forked from the zygote\n" in done.stdout
    assert ("current, install --prefix: forked from the zygote with -Xfrozen_modules=off\n"
            in done.stdout)
    assert re.search(r"current: install --prefix / shipped = \d+\.\d\d", done.stdout)
