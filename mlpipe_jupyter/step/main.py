"""Run one step notebook with papermill, in this process: what a step's container runs.

    python -m mlpipe_jupyter.step.main JOB.json

JOB.json holds `notebook`, `output`, `parameters` (the repr of a dict of Python literals, so
tuples and sets survive where JSON would turn them into lists) and `kernel_log`. Like the local
executor: a fresh kernel whose cwd is this process's cwd, the executed notebook written to
`output` even when a cell fails, cell output on stdout as it happens, the kernel process's own
chatter in `kernel_log`. Progress goes to stdout as `##mlpipe:progress DONE/TOTAL` lines, which
the executor turns into progress events instead of log lines.

Exit status: 0 the notebook ran to the end; 1 a cell raised (the executed notebook has the
traceback); 2 anything else (the last line of stderr says what).
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys
from pathlib import Path

PROGRESS = "##mlpipe:progress "


def progress_line(done: int, total: int) -> str:
    return f"{PROGRESS}{done}/{total}"


def parse_progress(line: str) -> tuple[int, int] | None:
    """(done, total) from a progress line, None for any other line."""
    if not line.startswith(PROGRESS):
        return None
    done, sep, total = line[len(PROGRESS):].strip().partition("/")
    if not sep or not done.isdigit() or not total.isdigit():
        return None
    return int(done), int(total)


class Output:
    """stdout for cell output and progress lines; progress always starts on a fresh line, even
    after a cell printed without a final newline."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._at_line_start = True

    def write(self, text: str) -> int:
        if text:
            self._stream.write(text)
            self._stream.flush()
            self._at_line_start = text.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def progress(self, done: int, total: int) -> None:
        self.write(("" if self._at_line_start else "\n") + progress_line(done, total) + "\n")


def _start_kernel(cwd: str, kernel_log: str | None):
    """A fresh kernel, started before papermill is imported so that the two overlap."""
    import os

    from jupyter_core.utils import run_sync

    from ..kernels.stepkernel import KERNEL_ARGS, kernel_manager_class  # an AsyncKernelManager

    km = kernel_manager_class()(kernel_name="python3")
    sink = open(kernel_log or os.devnull, "ab")  # noqa: SIM115  # lives as long as the kernel
    # KERNEL_ARGS as on the host: no IPython history database, created afresh in every
    # container's empty HOME and written by a thread while the step runs
    run_sync(km.start_kernel)(cwd=cwd, stdout=sink, stderr=sink,
                              extra_arguments=list(KERNEL_ARGS))
    return km


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m mlpipe_jupyter.step.main JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    parameters = ast.literal_eval(job["parameters"])
    out = Output(sys.stdout)
    km = _start_kernel(str(Path.cwd()), job.get("kernel_log"))

    from .engine import import_papermill, step_engine

    papermill = import_papermill()
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            job["notebook"], job["output"], parameters=parameters, engine_name=step_engine(),
            kernel_name="python3", progress_bar=False, log_output=False, stdout_file=out,
            stderr_file=out, mlpipe_km=km, mlpipe_cwd=Path.cwd(), mlpipe_progress=out.progress)
    except PapermillExecutionError as err:
        print(f"\nthe step failed in cell {err.exec_count}: {err.ename}: {err.evalue}",
              file=sys.stderr)
        return 1
    except Exception as err:  # the kernel died, the notebook is unreadable, ...
        if not type(err).__module__.startswith("nbclient"):  # "the kernel died" needs no trace
            import traceback

            traceback.print_exc()
        print(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
              file=sys.stderr)
        return 2
    finally:
        _stop_kernel(km)
    return 0


def _stop_kernel(km, wait: float = 5) -> None:
    """Graceful, so that the kernel flushes files it still holds open before they are
    published: asked to exit (kernels.client.exit_kernel: jupyter_client's shutdown_request can
    leave ipykernel hanging in exit, and its exit is polled every 0.1 s), killed if it lingers."""
    from jupyter_core.utils import run_sync

    from ..kernels.client import exit_kernel

    with contextlib.suppress(Exception):  # a kernel that cannot be asked is killed below
        run_sync(exit_kernel)(km, wait)
    run_sync(km.shutdown_kernel)(now=True)  # kills what lingers, removes connection files


if __name__ == "__main__":
    sys.exit(main())
