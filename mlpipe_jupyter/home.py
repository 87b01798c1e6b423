"""Where a pipeline's state lives: `.mlpipe/` next to the notebook, or $MLPIPE_HOME."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path


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

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def step_dir(self, run_id: str, step: str) -> Path:
        return self.runs / run_id / step

    def latest(self, pipeline: str) -> Path:
        """`latest/<notebook stem>`: the file outputs of that notebook's last successful run
        (a symlink to a directory beside it; see latest.py)."""
        name = re.sub(r"[^\w.+-]", "_", pipeline).lstrip(".") or "notebook"
        return self.root / "latest" / name

    def ensure(self) -> Home:
        for path in (self.root, self.artifacts, self.runs):
            path.mkdir(parents=True, exist_ok=True)
        return self
