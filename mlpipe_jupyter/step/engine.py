"""The papermill engine every step runs through, on the host (local executor) and inside a
container (stepmain): one behaviour for both.

Papermill's nbclient engine, extended with: a kernel started by us and handed in (so it can
boot while papermill imports, come from a warm pool, and be killed from another thread), a
connection that skips nbclient's fixed 0.2 s readiness wait, progress per code cell, and the
executed notebook saved at most once a second while cells run (papermill saves it twice per
cell), always at the start and at the end. Measured in docs/benchmarks.md.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from ..kernels.stepkernel import hidden_modules
from .lines import LineBuffer

ENGINE = "mlpipe-step"
SAVE_EVERY = 1.0  # seconds between saves of the executed notebook while cells run
# jsonschema (via nbformat) imports rfc3987_syntax when installed, which compiles a grammar at
# import time (0.8 s here); papermill.iorw imports pyarrow.fs for hdfs:// paths. A step notebook
# needs neither: they are hidden while papermill loads, outside a kernel (never in a user's).
_UNNEEDED = ("rfc3987_syntax", "pyarrow.fs")


_IMPORT = threading.Lock()


def _in_a_session() -> bool:
    """In an IPython session (`%pipeline run` in a user's kernel) a hidden module would stay
    hidden from the user's own code for good (jsonschema imports it once). Not a test of
    whether `ipykernel` was imported: the runner's kernel pool imports it (kernel specs)."""
    getipython = sys.modules.get("IPython.core.getipython")
    return getipython is not None and getipython.get_ipython() is not None


def import_papermill():
    # one thread at a time: step threads importing jupyter_client (via nbclient) at once can
    # see its modules half-initialised (an ImportError seen in the benchmarks)
    with _IMPORT:
        lean = "papermill" not in sys.modules and not _in_a_session()
        with hidden_modules(_UNNEEDED if lean else ()):
            import papermill

    return papermill


def run_step_notebook(job, parameters: dict, km) -> None:
    """Execute a step's notebook (an executors.base.StepJob) on the started kernel of `km`,
    papermill in this process: cell output goes to the step's log line by line, progress per
    code cell. What the local and the docker executor share."""
    papermill = import_papermill()
    out, err = LineWriter(job.log), LineWriter(job.log)
    try:
        papermill.execute_notebook(
            str(job.notebook), str(job.output), parameters=parameters,
            engine_name=step_engine(), kernel_name="python3", progress_bar=False,
            log_output=False, stdout_file=out, stderr_file=err, mlpipe_km=km,
            mlpipe_cwd=job.workdir, mlpipe_progress=job.progress,
            mlpipe_cancelled=job.cancel.is_set)
    finally:
        out.flush()
        err.flush()


class LineWriter:
    """A file-like sink for papermill's stdout/stderr that forwards whole lines."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._lines = LineBuffer()

    def write(self, text: str) -> int:
        for line in self._lines.feed(text):
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        for line in self._lines.flush():
            self._emit(line)


def _track_progress(nb_man, report: Callable[[int, int], None]) -> None:
    total = sum(1 for c in nb_man.nb.cells if c.cell_type == "code")
    done = [0]
    complete = nb_man.cell_complete

    def cell_complete(cell, cell_index=None, **kw):
        complete(cell, cell_index=cell_index, **kw)
        if cell.cell_type == "code":
            done[0] += 1
            report(done[0], total)

    nb_man.cell_complete = cell_complete


def _throttle_saves(nb_man) -> None:
    """Save while cells run at most every SAVE_EVERY s; the final save always happens."""
    save, complete = nb_man.save, nb_man.notebook_complete
    last = [time.monotonic()]  # notebook_start has just saved

    def throttled(**kwargs):
        now = time.monotonic()
        if now - last[0] >= SAVE_EVERY:
            save(**kwargs)
            last[0] = now

    def notebook_complete(**kwargs):
        nb_man.save = save
        complete(**kwargs)

    nb_man.save = throttled
    nb_man.notebook_complete = notebook_complete


def _connect_client(client, timeout: float) -> None:
    """Give nbclient a connected client, so it skips wait_for_ready's fixed 0.2 s (see
    kernels.client.connect); on this thread's event loop, the one nbclient runs cells on."""
    from jupyter_client import KernelManager
    from jupyter_core.utils import run_sync

    from ..kernels.client import connect

    client.kc = client.km.client()
    # nbclient uses shell and iopub only; a client of a KernelManager asks it whether the
    # kernel lives, so the heartbeat (a thread and a socket per step), stdin and control
    # sockets would be created and torn down for nothing (runner CPU: docs/benchmarks.md)
    client.kc.start_channels(stdin=False, control=False,
                             hb=not isinstance(client.km, KernelManager))
    try:
        run_sync(connect)(client.kc, timeout)
    except Exception:
        client.kc.stop_channels()
        client.kc = None
        raise
    client.kc.allow_stdin = False


def step_engine() -> str:
    """Register (once) and name the engine. Its extra keyword arguments, passed through
    papermill.execute_notebook: `mlpipe_km` (a started KernelManager; nbclient leaves stopping
    it to the caller), `mlpipe_cwd`, `mlpipe_progress(done, total)`, `mlpipe_cancelled()`."""
    from nbformat.v4.nbjson import writes
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
    from papermill.iorw import papermill_io

    class StepManager(NotebookExecutionManager):
        final_save = True  # False once papermill.execute_notebook is known to write it next

        def save(self, **kwargs):
            # nbformat.writes validates against the schema first and only logs what it
            # finds; twice per step that was a visible share of the runner's CPU per step.
            # The same JSON, from nbformat's own v4 writer.
            if self.output_path and self.final_save:
                papermill_io.write(writes(self.nb), self.output_path)
            self.last_save_time = self.now()

    class StepEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=True,
                             log_output=False, autosave_cell_every=30, **kwargs):
            # Engine.execute_notebook's life cycle, with StepManager's saves
            nb_man = StepManager(nb, output_path=output_path, progress_bar=progress_bar,
                                 log_output=log_output, autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output,
                                             **kwargs)
                # papermill.execute_notebook writes the finished notebook as soon as this
                # returns: completing it is not saved twice (an error propagating still is)
                nb_man.final_save = False
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False,
                                     stdout_file=None, stderr_file=None, start_timeout=60,
                                     execution_timeout=None, mlpipe_km=None, mlpipe_cwd=".",
                                     mlpipe_progress=None, mlpipe_cancelled=None, **kwargs):
            if mlpipe_progress is not None:
                _track_progress(nb_man, mlpipe_progress)
            _throttle_saves(nb_man)
            client = PapermillNotebookClient(
                nb_man, km=mlpipe_km, kernel_name=kernel_name, log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file, startup_timeout=start_timeout,
                timeout=execution_timeout, resources={"metadata": {"path": str(mlpipe_cwd)}},
            )
            if mlpipe_cancelled is not None and mlpipe_cancelled():
                return nb_man.nb
            try:
                _connect_client(client, start_timeout)
                return client.execute()
            finally:
                if client.kc is not None:
                    client.kc.stop_channels()

    if ENGINE not in papermill_engines._engines:
        papermill_engines.register(ENGINE, StepEngine)
    return ENGINE
