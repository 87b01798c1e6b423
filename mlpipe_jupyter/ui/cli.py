"""`mlpipe`: run a notebook's pipeline from a terminal, and read the run history.

Start-up stays fast: only click is imported at module level; everything else when a command
runs. Exit codes, one rule for every command, `--json` or not (each error kind declares its
own in errors.py): 0 done; 1 the work did not succeed (a step failed, the run was cancelled,
`verify` found damage, the run store or the executor failed); 2 a usage or spec error, nothing
was done (a bad option or notebook, an unknown run, step or log, input refused); 130
interrupted.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

if TYPE_CHECKING:
    from ..errors import MlpipeError


def _fail(err: MlpipeError) -> NoReturn:
    click.echo(f"error: {err}", err=True)
    sys.exit(err.exit_code)


def _home(home: str | None, notebook_dir: Path | None = None):
    from ..home import Home

    if home:
        return Home(Path(home).resolve())
    return Home.for_dir(notebook_dir or Path.cwd())


def _load_run(home, run_id: str) -> dict:
    store = _store(home)
    try:
        return store.run(run_id)
    finally:
        store.close()


def _store(home):
    """The run store opened for reading, after the explicit recovery step (reaper.reap_home:
    runs, containers and scratch of runners that died; it writes only then). A damaged store
    is one line (StoreDamaged)."""
    from ..errors import NotFound
    from ..run.reaper import reap_home
    from ..run.store import RunStore

    if not home.db.exists():
        raise NotFound(f"no run history at {home.root} (run a pipeline first, or pass --home)")
    reap_home(home)
    return RunStore(home.db, readonly=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mlpipe-jupyter")
def main() -> None:
    """Run a notebook's %%step cells as a pipeline; inspect its runs."""


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Override a pipeline parameter (value parsed as a Python literal).")
@click.option("--executor", default=None, help="docker, local, or one an installed package "
              "registers (default: docker when a daemon answers and a base image is there, "
              "else local).")
@click.option("--only", multiple=True, metavar="STEP", help="Run only this step (repeatable).")
@click.option("--from", "from_step", default=None, metavar="STEP",
              help="Run this step and everything downstream.")
@click.option("--no-cache", is_flag=True, help="Reuse nothing.")
@click.option("--max-parallel", type=int, default=None, metavar="N",
              help="Steps running at once (default: CPU count).")
@click.option("--fail-fast", is_flag=True, help="Stop every running step at the first failure.")
@click.option("--network", type=click.Choice(["none", "bridge"]), default=None,
              help="docker: the steps' network unless a step sets its own (default: bridge, or "
              "network in [tool.mlpipe]).")
@click.option("--home", default=None, help="State directory (default: .mlpipe next to the "
              "notebook, or $MLPIPE_HOME).")
def run(notebook, params, executor, only, from_step, no_cache, max_parallel, fail_fast, network,
        home):
    """Run the pipeline NOTEBOOK declares."""
    from ..errors import MlpipeError
    from ..model.codeinfo import parse_assignments
    from ..model.notebook import read_pipeline
    from ..model.states import StepState
    from ..run.runner import PipelineRunner, RunOptions
    from .config import load_config
    from .progress import TerminalProgress

    path = Path(notebook).resolve()
    try:
        config = load_config(path.parent)
        spec = read_pipeline(path)
        options = RunOptions(
            params=parse_assignments(list(params)), executor=executor or config.executor,
            only=tuple(only), from_step=from_step, no_cache=no_cache,
            max_parallel=max_parallel or config.max_parallel, fail_fast=fail_fast,
            executor_options={"network": network} if network else {}, source="cli")
        runner = PipelineRunner(spec, notebook=str(path), base_dir=path.parent,
                                options=options, home=_home(home, path.parent))
    except MlpipeError as err:
        _fail(err)
    from ..model.checks import pre_run_warnings  # what would fail later, said before anything runs
    from ..model.notebook import step_cells

    for warning in pre_run_warnings(spec, runner.params, cells=step_cells(path)):
        click.echo(f"warning: {warning}", err=True)
    for note in runner.notes:  # said once: why the steps run without containers, say
        click.echo(f"note: {note}", err=True)
    progress = TerminalProgress(runner)
    runner.add_listener(progress)
    runner.add_listener(_run_log_echo(progress.console))
    progress.start()
    # `kill PID` stops the run like Ctrl-C does: steps stopped, containers removed
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        state = runner.run()
    except KeyboardInterrupt:
        progress.stop()
        click.echo(f"interrupted: run {runner.run_id} cancelled, its steps stopped", err=True)
        sys.exit(130)
    except MlpipeError as err:  # the run store failed: the run stopped (never "succeeded")
        progress.stop()
        _fail(err)
    progress.stop()
    progress.summary(state)
    sys.exit(0 if state == StepState.SUCCEEDED else 1)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _run_log_echo(console):
    """A listener printing the run's own log lines (not a step's): a runtime image being built,
    say, which would otherwise look like a hang before the first step starts."""
    from ..run.events import RunListener

    class RunLogEcho(RunListener):
        def on_step_log(self, *, step, line, **_) -> None:
            if not step:
                console.print(f"  {line}", style="dim", markup=False, highlight=False,
                              soft_wrap=True)

    return RunLogEcho()


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON, newest first.")
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs.")
@click.option("--home", default=None, help="State directory (default: ./.mlpipe).")
def runs(as_json, limit, home):
    """List recent runs, newest first."""
    from ..errors import MlpipeError, NotFound

    try:
        store = _store(_home(home))
    except NotFound as err:  # no history yet: an empty listing, not an error
        if as_json:
            click.echo("[]")
        else:
            click.echo(str(err), err=True)
        return
    except MlpipeError as err:  # damaged: never "no runs yet"
        _fail(err)
    try:
        found = store.runs(limit=limit)
    except MlpipeError as err:
        _fail(err)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    from .listing import runs_table

    runs_table(found)


@main.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.option("--home", default=None, help="State directory (default: ./.mlpipe).")
def show(run_id, as_json, home):
    """Show one run: its steps, states, every reason and error, its outputs and their sizes."""
    from ..errors import MlpipeError

    where = _home(home)
    try:
        found = _load_run(where, run_id)
    except MlpipeError as err:
        _fail(err)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    from .listing import run_details

    run_details(found, where.artifacts, where.run_dir(found["id"]))


@main.command()
@click.argument("run_id")
@click.argument("step")
@click.option("--home", default=None, help="State directory (default: ./.mlpipe).")
def logs(run_id, step, home):
    """Print the log of STEP in run RUN_ID (of the run it was reused from, if it was)."""
    from ..errors import MlpipeError, NotFound
    from ..model.states import StepState

    where = _home(home)
    try:
        found = _load_run(where, run_id)
        names = [s["name"] for s in found["steps"]]
        if step not in names:
            raise NotFound(f"run {found['id']} has no step `{step}` (steps: {', '.join(names)})")
        info = next(s for s in found["steps"] if s["name"] == step)
        if info["state"] == StepState.CACHED and info.get("reused_from"):
            from .listing import reuse_origin

            origin = reuse_origin(lambda r: _load_run(where, r), step, info["reused_from"])
            log = where.step_files(origin, step).log
            if not log.exists():
                raise NotFound(f"step `{step}` was reused from run {origin}; its log from that "
                               f"run is gone ({log})")
            click.echo(f"step `{step}` was reused from run {origin}; its log from that run:",
                       err=True)
        else:
            log = where.step_files(found["id"], step).log
        if not log.exists():
            raise NotFound(f"step `{step}` of run {found['id']} has no log (it was "
                           f"{info['state']})")
    except MlpipeError as err:
        _fail(err)
    click.echo(log.read_text(encoding="utf-8"), nl=False)


@main.command()
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--to", "to", required=True, type=click.Path(file_okay=False),
              help="Directory for the step notebooks and pipeline.json.")
def export(notebook, to):
    """Write every step notebook and pipeline.json to a directory."""
    from ..errors import MlpipeError
    from ..model.notebook import read_pipeline
    from ..run.export import export_pipeline

    path = Path(notebook).resolve()
    try:
        spec = read_pipeline(path)
        manifest = export_pipeline(spec, Path(to), pipeline=path.stem, base_dir=path.parent)
    except MlpipeError as err:
        _fail(err)
    click.echo(f"exported {len(spec.steps)} step notebooks and {manifest.name} to "
               f"{manifest.parent}")


@main.group()
def image() -> None:
    """Runtime images of the docker executor."""


@image.command("build")
@click.argument("notebook", type=click.Path(dir_okay=False))
@click.option("--base-image", default=None, metavar="IMAGE",
              help="Build FROM this image (default: base-image in [tool.mlpipe], "
              "$MLPIPE_BASE_IMAGE, else python:3.11-slim or mlpipe-base:bookworm-py3.11, "
              "whichever the engine has).")
@click.option("-q", "--quiet", is_flag=True, help="Only the Dockerfile steps, not their output.")
def image_build(notebook, base_image, quiet):
    """Build (or find) the image every step of NOTEBOOK runs in, ahead of a run."""
    from ..errors import MlpipeError
    from ..executors.docker import connect
    from ..executors.images import describe, pipeline_images, resolve_base
    from ..model.notebook import read_pipeline
    from .config import load_config

    path = Path(notebook).resolve()
    started = time.monotonic()
    try:
        spec = read_pipeline(path)
        client = connect()
        base = resolve_base(client, base_image or load_config(path.parent).base_image,
                            log=lambda line: click.echo(line))
        built = pipeline_images(client, spec, path.parent, base=base, verbose=not quiet,
                                log=lambda line: click.echo(line))
    except MlpipeError as err:
        _fail(err)
    for name, image_id in built.items():
        users = [s.name for s in spec.steps if s.image == name]
        what = "runtime image" if name is None else f"image for --image {name} ({', '.join(users)})"
        click.echo(f"{what}: {describe(client, image_id)}")
    click.echo(f"ready in {time.monotonic() - started:.1f} s")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the damaged artifacts as JSON.")
@click.option("--home", default=None, help="State directory (default: ./.mlpipe).")
def verify(as_json, home):
    """Rehash every artifact and list those whose content no longer matches its digest.

    A damaged artifact is never reused: the next run re-runs the step that produced it and
    rewrites it. Exit code 1 when any is damaged.
    """
    from ..run.artifacts import ArtifactStore

    store = ArtifactStore(_home(home).artifacts)
    digests = store.digests()
    damaged = {d: why for d in digests if (why := store.verify(d, full=True)) is not None}
    if as_json:
        click.echo(json.dumps({"checked": len(digests), "damaged": [
            {"digest": d, "path": str(store.path(d)), "problem": why}
            for d, why in damaged.items()]}, indent=2))
    else:
        for digest, why in damaged.items():
            click.echo(f"damaged: {store.path(digest)} ({why})")
        click.echo(f"checked {len(digests)} artifact{'s' if len(digests) != 1 else ''}: "
                   + (f"{len(damaged)} damaged; the next run re-runs the steps that made them"
                      if damaged else "all intact"))
    sys.exit(1 if damaged else 0)


@main.command()
@click.option("--all", "everything", is_flag=True,
              help="Remove every mlpipe container, even those of runs still going.")
@click.option("--images", is_flag=True, help="Also remove runtime images built from other "
              "versions of mlpipe's files, which it never uses again.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--home", default=None, help="State directory whose interrupted runs to mark "
              "failed (default: ./.mlpipe).")
def gc(everything, images, dry_run, home):
    """Remove containers (and temp dirs) left behind by runs whose runner died.

    A container is left behind when the `mlpipe run` (or kernel) that started it is no longer
    alive on this host, as its `mlpipe.owner` label tells; containers of live runs are left to
    their runner. Runs of the store still marked running by a dead runner are marked failed.
    """
    from ..errors import MlpipeError
    from ..executors.containers import collect_garbage
    from ..executors.docker import connect

    where = _home(home)
    if where.db.exists():
        from ..run.store import RunStore

        try:
            store = RunStore(where.db)
            store.recover_interrupted()  # runs of dead runners: failed, interrupted
            store.close()
        except MlpipeError as err:
            _fail(err)
    from ..kernels.scratch import sweep

    scratch = sweep(dry_run=dry_run)  # kernel logs and sockets of runners that died
    try:
        client = connect()
        removed = collect_garbage(client, everything=everything, dry_run=dry_run)
        stale = []
        if images:
            from ..executors.images import remove_stale_images

            stale = remove_stale_images(client, dry_run=dry_run)
    except MlpipeError as err:
        _fail(err)
    verb = "would remove" if dry_run else "removed"
    for entry in removed:
        click.echo(f"{verb} {entry['name']} (run {entry['run']}, step {entry['step']}, "
                   f"{entry['status']}: {entry['why']})")
    for name in stale:
        click.echo(f"{verb} image {name} (built from other mlpipe files)")
    for path in scratch:
        click.echo(f"{verb} {path} (scratch of a runner that is gone)")
    click.echo(f"{verb} {len(removed)} container{'s' if len(removed) != 1 else ''}"
               + (f" and {len(stale)} image{'s' if len(stale) != 1 else ''}" if images else "")
               + (f" and {len(scratch)} scratch director{'ies' if len(scratch) != 1 else 'y'}"
                  if scratch else ""))


@main.command()
@click.option("--home", default=None, help="State directory (default: ./.mlpipe, or "
              "$MLPIPE_HOME).")
def doctor(home):
    """Check mlpipe.db; if it is damaged, save it aside and rebuild it from runs/.

    The damaged file is kept as mlpipe.db.damaged-<time> (with its -wal and -shm). The rebuilt
    store has every run of runs/ with its steps and their states; cache keys cannot be rebuilt,
    so reuse starts over. Artifacts are untouched (content-addressed). Exit code 0 when the
    store is sound or was rebuilt, 1 when it could not be.
    """
    from ..errors import MlpipeError
    from ..run.doctor import doctor as check

    try:
        report = check(_home(home))
    except MlpipeError as err:
        _fail(err)
    for line in report.lines:
        click.echo(line)


from .cli_service import COMMANDS as _SERVICE_COMMANDS  # noqa: E402  (publish, serve, ...)

for _command in _SERVICE_COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
