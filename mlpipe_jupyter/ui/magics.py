"""%%step, %%pipeline_params, %%pipeline_setup and %pipeline for an IPython kernel."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

from IPython.core import magic_arguments as ma
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..errors import MlpipeError
from ..model.builder import PipelineBuilder
from ..model.codeinfo import parse_assignments
from ..model.options import setup_help, split_line, step_help
from ..model.rules import NETWORKS
from ..run.storecheck import os_error_line


@ma.magic_arguments()
@ma.argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
             help="override a pipeline parameter (a Python literal)")
@ma.argument("--executor", default=None,
             help="docker or local (default: docker when it can run here, else local)")
@ma.argument("--only", nargs="+", default=[], metavar="STEP", help="run only these steps")
@ma.argument("--from", dest="from_step", default=None, metavar="STEP",
             help="run this step and everything downstream of it")
@ma.argument("--no-cache", action="store_true", help="reuse nothing")
@ma.argument("--max-parallel", type=int, default=None, metavar="N")
@ma.argument("--fail-fast", action="store_true", help="stop everything at the first failure")
@ma.argument("--wait", action="store_true", help="block until the run ends")
@ma.argument("--network", default=None, choices=NETWORKS,
             help="docker: the steps' network unless a step sets its own")
def _run_args(line: str) -> None:
    """%pipeline run [-p NAME=VALUE ...] [--executor E] [--only STEP ...] [--from STEP]
    [--no-cache] [--max-parallel N] [--network none|bridge] [--wait]"""


@ma.magic_arguments()
@ma.argument("--to", required=True, metavar="DIR", help="directory for the step notebooks")
def _export_args(line: str) -> None:
    """%pipeline export --to DIR"""


@ma.magic_arguments()
@ma.argument("-n", type=int, default=10, help="how many runs")
def _runs_args(line: str) -> None:
    """%pipeline runs [-n N]"""


@magics_class
class PipelineMagics(Magics):
    """Holds the kernel's registry of steps; one instance per shell."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self.builder = PipelineBuilder()
        self.last_run = None
        self._cell_id: str | None = None
        shell.events.register("pre_run_cell", self._remember_cell)
        shell.user_ns.setdefault("_mlpipe", self)

    @classmethod
    def unregister(cls, shell) -> None:
        magics = shell.user_ns.pop("_mlpipe", None)
        if magics is not None:
            shell.events.unregister("pre_run_cell", magics._remember_cell)

    def _remember_cell(self, info=None) -> None:
        self._cell_id = getattr(info, "cell_id", None)

    # -- running code in the kernel ----------------------------------------------------------
    def _run_code(self, code: str) -> Any:
        """Run cell code in the user namespace like a normal cell; the last expression is
        the magic's result, so Jupyter displays it."""
        shell = self.shell
        source = shell.transform_cell(code)
        filename = shell.compile.cache(source, shell.execution_count)
        tree = shell.transform_ast(shell.compile.ast_parse(source, filename=filename))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(shell.compile(tree, filename, "exec"), shell.user_ns)
        if last is not None:
            return eval(shell.compile(last, filename, "eval"), shell.user_ns)
        return None

    # -- cell magics -------------------------------------------------------------------------
    @cell_magic
    def step(self, line: str, cell: str) -> Any:
        try:
            options = self.builder.add_step(line, cell, cell_id=self._cell_id)
        except MlpipeError as err:
            raise IPythonUsageError(str(err)) from None
        if not options.no_run:
            return self._run_code(cell)
        return None

    step.__doc__ = step_help()

    @cell_magic
    def pipeline_params(self, line: str, cell: str) -> Any:
        """Pipeline parameters: plain `NAME = literal` assignments, with their defaults."""
        if line.strip():
            raise IPythonUsageError(f"%%pipeline_params takes no options, got `{line.strip()}`")
        try:
            self.builder.add_params(cell)
        except MlpipeError as err:
            raise IPythonUsageError(str(err)) from None
        return self._run_code(cell)

    @cell_magic
    def pipeline_setup(self, line: str, cell: str) -> Any:
        try:
            self.builder.set_setup(line, cell)
        except MlpipeError as err:
            raise IPythonUsageError(str(err)) from None
        return self._run_code(cell)

    pipeline_setup.__doc__ = setup_help()

    # -- %pipeline ---------------------------------------------------------------------------
    @line_magic
    def pipeline(self, line: str) -> Any:
        """%pipeline run|show|runs|export|spec|clear ... (`%pipeline run --help` for options)"""
        sub, _, rest = line.strip().partition(" ")
        handler = {"run": self._run, "show": self._show, "runs": self._runs,
                   "export": self._export, "spec": self._spec, "clear": self._clear}.get(sub)
        if handler is None:
            raise IPythonUsageError(f"%pipeline: unknown subcommand `{sub}` "
                                    "(run, show, runs, export, spec, clear)")
        try:
            return handler(rest)
        except MlpipeError as err:
            raise IPythonUsageError(str(err)) from None
        except OSError as err:  # export --to a file, a `.mlpipe` that is a file: the path, once
            raise IPythonUsageError(f"%pipeline {sub}: {os_error_line(err)}") from None

    def spec(self):
        return self.builder.spec()

    def _notebook_label(self) -> str:
        name = os.environ.get("JPY_SESSION_NAME") or self.shell.user_ns.get("__session__")
        return str(Path(name).resolve()) if name else str(Path.cwd() / "<kernel>")

    def _run(self, rest: str):
        from ..model.checks import require_steps
        from ..run.runner import PipelineRunner, RunOptions
        from .config import load_config
        from .handle import PipelineRun

        args = _parse_args(_run_args, "run", rest)
        require_steps(self.spec())  # before an executor is chosen: no image built for nothing
        config = load_config(Path.cwd())
        options = RunOptions(
            params=parse_assignments(args.param), executor=args.executor or config.executor,
            only=tuple(args.only), from_step=args.from_step, no_cache=args.no_cache,
            max_parallel=args.max_parallel or config.max_parallel, fail_fast=args.fail_fast,
            executor_options={"network": args.network} if args.network else {},
            source="kernel")
        runner = PipelineRunner(self.spec(), notebook=self._notebook_label(),
                                base_dir=Path.cwd(), options=options)
        self._warn(runner.spec, runner.params)
        for note in runner.notes:  # why the steps run without containers, say
            print(f"note: {note}")
        run = PipelineRun(runner)
        self.last_run = run
        # the widget is shown before the first event, so it misses nothing; the handle the
        # magic returns then displays as nothing more in this cell (see PipelineRun)
        from IPython.display import display

        display(run)
        run.start()
        if args.wait:
            run.wait()
        return run

    def _show(self, rest: str):
        """The DAG of the registered steps, not run; a spec error is a line in the widget."""
        from ..model.checks import require_steps
        from ..model.dag import build_dag
        from .widget import DagWidget

        if rest.strip():
            raise MlpipeError(f"%pipeline show takes no options, got `{rest.strip()}`")
        title = Path(self._notebook_label()).name
        try:
            spec = self.spec()
            require_steps(spec)
            graph = build_dag(spec, file_exists=lambda p: Path(p).exists())
        except MlpipeError as err:
            return DagWidget(message=str(err), title=title)
        self._warn(spec)
        return DagWidget(graph, title=title)

    def _warn(self, spec, params: dict[str, Any] | None = None) -> None:
        """What the pipeline would fail on, one line each in the cell output, before the widget;
        a name that exists in this kernel but in no step notebook is said to be kernel-only."""
        from ..model.checks import pre_run_warnings

        for warning in pre_run_warnings(spec, params, kernel_names=self.shell.user_ns.keys()):
            print(f"warning: {warning}")

    def _runs(self, rest: str):
        from ..home import Home
        from ..run.store import RunStore

        args = _parse_args(_runs_args, "runs", rest)
        store = RunStore(Home.for_dir(Path.cwd()).db, readonly=True)  # reading writes nothing
        try:
            runs = store.runs(limit=args.n)  # a garbled record is StoreDamaged: one line
        finally:
            store.close()
        rows = [f"{r['id']}  {r['state']:<10} {r['started'] or ''}  "
                f"{Path(r['notebook'] or '').name}" for r in runs]
        return _Text("\n".join(rows) or "(no runs yet)")

    def _export(self, rest: str):
        from ..run.export import export_pipeline

        args = _parse_args(_export_args, "export", rest)
        path = export_pipeline(self.spec(), Path(args.to), pipeline="pipeline")
        return _Text(f"exported {len(self.spec().steps)} step notebooks and {path.name} to "
                     f"{path.parent}")

    def _spec(self, rest: str):
        return self.spec()

    def _clear(self, rest: str):
        self.builder.clear()
        return None


def _parse_args(func, sub: str, rest: str):
    """A `%pipeline SUB` line split by the shell's rules, as `%%step` lines are
    (`-p "x=[1, 2]"` is one word); a bad line is one MlpipeError line."""
    try:
        return func.parser.parse_args(split_line(rest))
    except (IPythonUsageError, ValueError) as err:
        raise MlpipeError(f"%pipeline {sub}: {err}") from None


class _Text(str):
    """A string that displays without quotes."""

    def __repr__(self) -> str:
        return str(self)


