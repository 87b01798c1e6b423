"""Where a pipeline's state lives, and the one owner of its on-disk layout:

    <home>/                      `.mlpipe/` next to the notebook, or $MLPIPE_HOME
      mlpipe.db                  run history (run/store.py)
      artifacts/<sha256>/        immutable artifacts; artifacts/.staging/<run>/ while publishing
      runs/<run>/<step>/         step.ipynb, output.ipynb, log.txt, kernel.log, work/, out/,
                                 box/ (what a sandboxed step's container writes)
      latest/<notebook stem>     the file outputs of that notebook's last successful run
      batches/<key>/             a fan-out step's mini-batch results (run/foreach.py)

No other module writes these names: they ask Home (or a StepFiles) for the path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

STEP_NOTEBOOK, OUTPUT_NOTEBOOK, LOG_FILE = "step.ipynb", "output.ipynb", "log.txt"
KERNEL_LOG, BOX = "kernel.log", "box"


@dataclass(frozen=True)
class StepFiles:
    """One step's directory in one run: `runs/<run>/<step>/`."""

    dir: Path

    @property
    def notebook(self) -> Path:
        """The step notebook as written before it ran (papermill's input)."""
        return self.dir / STEP_NOTEBOOK

    @property
    def output(self) -> Path:
        """The executed notebook (papermill's output)."""
        return self.dir / OUTPUT_NOTEBOOK

    @property
    def log(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def kernel_log(self) -> Path:
        """What the step's kernel process printed outside any cell (its own errors)."""
        return self.dir / KERNEL_LOG

    @property
    def box(self) -> Path:
        """What a sandboxed step's container writes (executors/sandbox.py checks it)."""
        return self.dir / BOX

    @property
    def work(self) -> Path:
        """The step's working directory: its file inputs are copied in, its code runs here."""
        return self.dir / "work"

    @property
    def out(self) -> Path:
        """Where the step's runtime saves its variable outputs before they are published."""
        return self.dir / "out"

    def worker(self, index: int) -> Path:
        """A fan-out step's worker `index`: its working directory (run/foreach.py)."""
        return self.dir / "workers" / str(index)


@dataclass(frozen=True)
class Home:
    root: Path

    @classmethod
    def for_dir(cls, directory: str | Path) -> Home:
        env = os.environ.get("MLPIPE_HOME")
        return cls(Path(env).resolve() if env else Path(directory).resolve() / ".mlpipe")

    @property
    def db(self) -> Path:
        return self.root / "mlpipe.db"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    def staging(self, run_id: str) -> Path:
        """Where a run's artifacts are assembled before they are renamed into place."""
        return self.artifacts / ".staging" / run_id

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def step_dir(self, run_id: str, step: str) -> Path:
        return self.runs / run_id / step

    def step_files(self, run_id: str, step: str) -> StepFiles:
        return StepFiles(self.step_dir(run_id, step))

    @property
    def batches(self) -> Path:
        """Fan-out steps' mini-batch results, `batches/<key>/`, each renamed into place once
        complete; `batches/.tmp/` while a worker writes one (run/foreach.py)."""
        return self.root / "batches"

    def batch(self, key: str) -> Path:
        return self.batches / key

    def latest(self, pipeline: str) -> Path:
        """`latest/<notebook stem>`: the file outputs of that notebook's last successful run
        (a symlink to a directory beside it; see latest.py)."""
        name = re.sub(r"[^\w.+-]", "_", pipeline).lstrip(".") or "notebook"
        return self.root / "latest" / name

    def ensure(self) -> Home:
        for path in (self.root, self.artifacts, self.runs):
            path.mkdir(parents=True, exist_ok=True)
        return self
