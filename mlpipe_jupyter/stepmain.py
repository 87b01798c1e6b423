"""Run one step notebook with papermill, in this process: what a step's container runs.

    python -m mlpipe_jupyter.stepmain JOB.json

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


def _engine(out: Output, kernel_log: str | None) -> str:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class ContainerEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False,
                                     stdout_file=None, stderr_file=None, start_timeout=60,
                                     execution_timeout=None, **kwargs):
            total = sum(1 for c in nb_man.nb.cells if c.cell_type == "code")
            done = [0]
            complete = nb_man.cell_complete

            def cell_complete(cell, cell_index=None, **kw):
                complete(cell, cell_index=cell_index, **kw)
                if cell.cell_type == "code":
                    done[0] += 1
                    out.progress(done[0], total)

            nb_man.cell_complete = cell_complete
            client = PapermillNotebookClient(
                nb_man, kernel_name=kernel_name, log_output=log_output, stdout_file=stdout_file,
                stderr_file=stderr_file, startup_timeout=start_timeout,
                timeout=execution_timeout, resources={"metadata": {"path": str(Path.cwd())}})
            if not kernel_log:
                return client.execute()
            with open(kernel_log, "ab") as sink:
                return client.execute(stdout=sink, stderr=sink)

    papermill_engines.register("mlpipe-container", ContainerEngine)
    return "mlpipe-container"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m mlpipe_jupyter.stepmain JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    parameters = ast.literal_eval(job["parameters"])
    out = Output(sys.stdout)

    import papermill
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            job["notebook"], job["output"], parameters=parameters,
            engine_name=_engine(out, job.get("kernel_log")), kernel_name="python3",
            progress_bar=False, log_output=False, stdout_file=out, stderr_file=out)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
