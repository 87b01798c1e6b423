"""The docker executor against the real engine: nothing here is mocked, nothing is skipped.

`make test` (and so CI) runs scripts/setup-docker.sh first, which starts an engine and builds
the offline base image; without an engine every test here fails, saying so.

Most pipelines here have no requirements, so they share one small runtime image; the example
notebooks share the image of notebooks/requirements.txt. Both are built once per session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from mlpipe_jupyter.executors.containers import owner_label
from mlpipe_jupyter.model.notebook import read_pipeline
from mlpipe_jupyter.run.events import RunListener
from mlpipe_jupyter.run.runner import PipelineRunner, RunOptions
from mlpipe_jupyter.run.store import RunStore
from tests.conftest import (
    BASE_IMAGE,
    MLPIPE,
    NOTEBOOKS,
    run_cli,
    scratch_of,
    wait_for,
    write_notebook,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def examples(tmp_path_factory, client) -> Path:
    """A copy of notebooks/ whose runtime image (its requirements.txt) is built once."""
    directory = tmp_path_factory.mktemp("examples")
    for path in NOTEBOOKS.iterdir():
        if path.is_file():
            shutil.copy(path, directory / path.name)
    built = run_cli("image", "build", "wine_quality.ipynb", cwd=directory, timeout=900)
    assert built.returncode == 0, built.stderr + built.stdout
    return directory


def containers(client, run_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"mlpipe.run={run_id}"})


def cli_run(directory: Path, notebook: str, *args: str, env: dict | None = None):
    result = run_cli("run", notebook, *args, cwd=directory, env=env, timeout=600)
    runs = json.loads(run_cli("runs", "--json", cwd=directory).stdout)
    return result, (runs[0] if runs else None)


def artifact(directory: Path, digest: str, name: str) -> Path:
    return directory / ".mlpipe" / "artifacts" / digest / "data" / name


def run_pipeline(directory: Path, cells: list[str], *, listeners=(), **options):
    """A pipeline run in this process (to inspect its outputs and events): (runner, state)."""
    notebook = write_notebook(directory / "pipeline.ipynb", cells)
    runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook), base_dir=directory,
                            options=RunOptions(executor="docker", **options),
                            listeners=list(listeners))
    return runner, runner.run()


def stored_run(runner) -> dict:
    store = RunStore(runner.home.db)
    try:
        return store.run(runner.run_id)
    finally:
        store.close()


# -- runtime images ----------------------------------------------------------------------------
def test_examples_run_in_containers_with_the_same_outputs_as_local(examples, client):
    for notebook, step, report in (("wine_quality.ipynb", "evaluate", "reports/metrics.json"),
                                   ("model_comparison.ipynb", "compare",
                                    "reports/comparison.json")):
        results = {}
        for executor in ("docker", "local"):
            result, run = cli_run(examples, notebook, "--executor", executor, "--no-cache")
            assert result.returncode == 0, result.stdout + result.stderr
            assert run["executor"] == executor and run["state"] == "succeeded"
            assert all(s["state"] == "succeeded" for s in run["steps"])
            outputs = next(s["outputs"] for s in run["steps"] if s["name"] == step)
            results[executor] = json.loads(artifact(examples, outputs[report], report)
                                           .read_text())
            assert containers(client, run["id"]) == []  # every container removed after its step
        assert results["docker"] == results["local"], notebook
    assert 0.8 < results["docker"]["accuracy"]["gbm"] <= 1


def test_image_build_reuses_and_a_requirements_change_builds_anew(notebook_dir, client, request):
    write_notebook(notebook_dir / "p.ipynb", ["%%step a --outputs x\nx = 1"])
    first = run_cli("image", "build", "p.ipynb", cwd=notebook_dir)
    assert first.returncode == 0, first.stderr
    started = time.monotonic()
    again = run_cli("image", "build", "p.ipynb", cwd=notebook_dir)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    tag = again.stdout.split("runtime image ")[1].split(" ")[0]
    assert f"{tag} (reused)" in again.stdout and "Step " not in again.stdout
    assert took < 10
    image_id = client.images.get(tag).id
    # a run uses that image as it is: no build, and the image id keys the step's reuse
    result, run = cli_run(notebook_dir, "p.ipynb")
    assert result.returncode == 0 and run["executor"] == "docker", result.stdout + result.stderr
    assert f"{tag} (reused)" in result.stdout and "building" not in result.stdout
    assert client.images.get(tag).id == image_id
    # new requirements: a new image with them, built with visible progress. The engine (and its
    # images) outlives a test session, so the requirement is unique to this run: the exclusion
    # of a version that does not exist changes the image's recipe, not what pip installs.
    nonce = uuid.uuid4().int % 10**9
    (notebook_dir / "requirements.txt").write_text(f"six!=0.0.{nonce}\n")
    changed = run_cli("image", "build", "p.ipynb", cwd=notebook_dir)
    assert changed.returncode == 0, changed.stderr
    new_tag = changed.stdout.split("runtime image ")[-1].split(" ")[0]
    request.addfinalizer(lambda: client.images.remove(new_tag, force=True))
    assert "Step 1/" in changed.stdout
    assert "RUN pip install -r /opt/mlpipe-build/requirements.txt" in changed.stdout
    assert new_tag != tag and client.images.get(new_tag).id != image_id
    out = client.containers.run(new_tag, ["python", "-c", "import six; print(six.__name__)"],
                                remove=True)
    assert out.strip() == b"six"
    result, run = cli_run(notebook_dir, "p.ipynb")
    assert result.returncode == 0
    assert run["steps"][0]["state"] == "succeeded"  # not reused: the image changed
    assert run["steps"][0]["reason"] == "image changed"


def test_a_failing_build_shows_the_failing_line(notebook_dir, client):
    write_notebook(notebook_dir / "p.ipynb", [
        "%%pipeline_setup --pip mlpipe-no-such-package-zz==1.0\nimport os",
        "%%step a\nx = 1"])
    result = run_cli("image", "build", "p.ipynb", cwd=notebook_dir)
    assert result.returncode == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: building image mlpipe-runtime:")
    assert "RUN pip install -r /opt/mlpipe-build/requirements.txt" in error
    assert "No matching distribution found for mlpipe-no-such-package-zz==1.0" in error
    # the same failure in a run: the run fails before any step, with the same line
    run_result, run = cli_run(notebook_dir, "p.ipynb")
    assert run_result.returncode == 1
    assert run["steps"][0]["state"] == "skipped"
    assert "No matching distribution found" in run["steps"][0]["reason"]


def test_a_step_image_gets_the_runtime_layers_and_a_missing_one_is_named(notebook_dir,
                                                                         client):
    import io

    dockerfile = f"FROM {BASE_IMAGE}\nRUN echo from-the-step-image > /marker\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag="mlpipe-test-marker:1", rm=True)
    runner, state = run_pipeline(notebook_dir, [
        "%%step custom --image mlpipe-test-marker:1 --outputs marker\n"
        "marker = open('/marker').read().strip()",
        "%%step plain --outputs has_marker\nimport os\nhas_marker = os.path.exists('/marker')"])
    assert state == "succeeded"
    assert runner.artifacts.load(runner.outputs["custom"]["marker"]) == "from-the-step-image"
    assert runner.artifacts.load(runner.outputs["plain"]["has_marker"]) is False
    assert runner.executor.environment(read_pipeline(notebook_dir / "pipeline.ipynb")
                                       .step("custom")).startswith("sha256:")

    write_notebook(notebook_dir / "missing.ipynb",
                   ["%%step fit --image nosuch/image:0\nx = 1"])
    result, run = cli_run(notebook_dir, "missing.ipynb")
    assert result.returncode == 1
    reason = run["steps"][0]["reason"]
    assert reason.startswith("step `fit` --image: image `nosuch/image:0` not found")
    assert "\n" not in reason
    # the base image is a setting; a missing one says which setting
    (notebook_dir / "pyproject.toml").write_text('[tool.mlpipe]\nbase-image = "nosuch/base:1"\n')
    result = run_cli("image", "build", "pipeline.ipynb", cwd=notebook_dir)
    assert result.returncode == 1
    assert result.stderr.startswith("error: base image `nosuch/base:1` not found: it is not in "
                                    "the local Docker engine and `docker pull` failed")
    assert result.stderr.strip().endswith("(base-image in [tool.mlpipe] or MLPIPE_BASE_IMAGE)")


# -- steps in containers -----------------------------------------------------------------------
# papermill runs in the runner and drives the kernel in the container (the default here), or
# runs in the container (where the runner cannot reach the container's sockets)
BOTH = pytest.mark.parametrize("papermill", ["host", "container"])


@BOTH
def test_step_failure_names_the_cell_and_keeps_the_traceback(notebook_dir, client, papermill):
    write_notebook(notebook_dir / "p.ipynb", ["%%step boom\nx = 1\nraise ValueError('bad value')"])
    result, run = cli_run(notebook_dir, "p.ipynb", env={"MLPIPE_DOCKER_PAPERMILL": papermill})
    assert result.returncode == 1
    message = "step `boom` failed in the step code, line 2: ValueError: bad value"
    assert message in result.stdout
    error = run["steps"][0]["error"]
    assert error["message"] == message and error["ename"] == "ValueError"
    assert "raise ValueError('bad value')" in error["traceback"]
    output = notebook_dir / ".mlpipe" / "runs" / run["id"] / "boom" / "output.ipynb"
    assert "bad value" in output.read_text()  # the executed notebook is kept


def test_gpus_become_a_device_request(notebook_dir, client):
    # this engine has no GPU runtime (CI neither): Docker refuses the request, which shows it
    # was made; the error says what is missing
    write_notebook(notebook_dir / "p.ipynb", ["%%step train --gpus 1\nx = 1"])
    result, run = cli_run(notebook_dir, "p.ipynb")
    assert result.returncode == 1
    assert run["steps"][0]["error"]["message"] == (
        "step `train` --gpus 1: this Docker engine cannot give containers GPUs (install the "
        "NVIDIA Container Toolkit), or drop --gpus")
    assert containers(client, run["id"]) == []


def test_out_of_memory_is_reported_as_such(notebook_dir, client):
    write_notebook(notebook_dir / "p.ipynb", [
        "%%step hog --memory 256m\nblock = bytearray(1024 * 1024 * 1024)\nblock[::4096] = b'x' "
        "* len(block[::4096])"])
    result, run = cli_run(notebook_dir, "p.ipynb")
    assert result.returncode == 1
    message = "step `hog` was killed: out of memory (limit 256m)"
    assert message in result.stdout
    assert run["steps"][0]["error"]["message"] == message
    assert run["steps"][0]["error"]["cause"] == "oom"


CGROUP_CPUS = """\
from pathlib import Path
v2 = Path('/sys/fs/cgroup/cpu.max')
if v2.exists():
    quota, period = v2.read_text().split()
else:
    quota = Path('/sys/fs/cgroup/cpu/cpu.cfs_quota_us').read_text()
    period = Path('/sys/fs/cgroup/cpu/cpu.cfs_period_us').read_text()
cpus = None if quota == 'max' or int(quota) < 0 else int(quota) / int(period)
"""


def test_cpus_limit_is_in_the_container_cgroup(notebook_dir, client):
    runner, state = run_pipeline(notebook_dir, [
        "%%step limited --cpus 0.5 --outputs cpus\n" + CGROUP_CPUS,
        "%%step free --outputs cpus_free\n" + CGROUP_CPUS + "cpus_free = cpus"])
    assert state == "succeeded"
    assert runner.artifacts.load(runner.outputs["limited"]["cpus"]) == 0.5
    assert runner.artifacts.load(runner.outputs["free"]["cpus_free"]) is None


@pytest.mark.parametrize("user", [None, "1234:1234"])
def test_output_files_belong_to_the_invoking_user(notebook_dir, client, user):
    uid, gid = (os.getuid(), os.getgid()) if user is None else (1234, 1234)
    runner, state = run_pipeline(notebook_dir, [
        "%%step make --outputs data/\nimport os\nos.makedirs('data')\n"
        "open('data/a.txt', 'w').write('a')",
        "%%step use --inputs data/ --outputs who report.txt\nimport os\n"
        "who = [os.getuid(), os.getgid(), open('data/a.txt').read()]\n"
        "open('report.txt', 'w').write('r')\n"
        "try:\n    open('data/a.txt', 'w')\nexcept OSError as err:\n    who.append(err.errno)"],
        executor_options={} if user is None else {"user": user})
    assert state == "succeeded", stored_run(runner)
    # inside: the user's ids (root's steps run as nobody, 65534); the input file is readable,
    # and read-only (EROFS = 30)
    inside = (65534, 65534) if (uid, gid) == (0, 0) else (uid, gid)
    assert runner.artifacts.load(runner.outputs["use"]["who"]) == [*inside, "a", 30]
    step_dir = runner.home.step_dir(runner.run_id, "use")
    for path in (step_dir / "work" / "report.txt", step_dir / "output.ipynb",
                 runner.home.step_dir(runner.run_id, "make") / "work" / "data" / "a.txt"):
        assert (path.stat().st_uid, path.stat().st_gid) == (uid, gid), path
    # the input's mount point is gone from the working directory once the step ended
    assert not (step_dir / "work" / "data").exists()


class Recorder(RunListener):
    def __init__(self) -> None:
        self.lines: list[tuple[float, str, str]] = []
        self.progress: list[tuple[int, int]] = []
        self.states: list[tuple[float, str, str]] = []

    def on_step_log(self, *, step, line, **_) -> None:
        self.lines.append((time.monotonic(), step, line))

    def on_step_progress(self, *, done, total, **_) -> None:
        self.progress.append((done, total))

    def on_step_state(self, *, step, state, **_) -> None:
        self.states.append((time.monotonic(), step, state))


@BOTH
def test_output_is_streamed_live_with_progress_and_env(notebook_dir, client, papermill):
    recorder = Recorder()
    runner, state = run_pipeline(notebook_dir, [
        "%%step talk --env GREETING=hello\nimport os, sys, time\n"
        "print(os.environ['GREETING'], os.environ['MLPIPE_STEP'], flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        "time.sleep(3)\nprint('second', end='')"], listeners=[recorder],
        executor_options={"papermill": papermill})
    assert state == "succeeded"
    lines = {line: at for at, step, line in recorder.lines if step == "talk"}
    assert {"hello talk", "to stderr", "second"} <= set(lines)
    finished = next(at for at, step, s in recorder.states if s == "succeeded")
    assert finished - lines["hello talk"] > 2  # seen while the step still ran
    assert recorder.progress[-1][0] == recorder.progress[-1][1] >= 4
    assert [d for d, _ in recorder.progress] == sorted(d for d, _ in recorder.progress)
    log = (runner.home.step_dir(runner.run_id, "talk") / "log.txt").read_text().splitlines()
    assert log == ["hello talk", "to stderr", "second"]  # no progress markers in the log


def test_the_container_runs_only_the_kernel_driven_from_the_runner(notebook_dir, client):
    before = scratch_of(os.getpid())  # this process is the runner
    runner, state = run_pipeline(notebook_dir, [
        "%%step look --outputs procs\nimport os\nprocs = []\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        procs.append(open(f'/proc/{pid}/cmdline').read().replace('\\0', ' ').strip())\n"
        "    except OSError:\n"
        "        pass"])
    assert state == "succeeded", stored_run(runner)
    procs = [p for p in runner.artifacts.load(runner.outputs["look"]["procs"]) if p]
    # docker-init (tini, pid 1) and the kernel it started: nothing else
    assert len(procs) == 2, procs
    init, kernel = sorted(procs, key=lambda p: not p.startswith("/sbin/docker-init -- "))
    assert init.startswith("/sbin/docker-init -- "), procs
    assert kernel.startswith("/opt/mlpipe/bin/python -m mlpipe_jupyter.kernels.stepkernel -f "
                             "/mlpipe/kernel/kernel.json"), procs
    assert not any("papermill" in p or "stepmain" in p for p in procs), procs
    # the executed notebook was written by the runner, the kernel's own output kept apart
    step_dir = runner.home.step_dir(runner.run_id, "look")
    assert "procs" in (step_dir / "output.ipynb").read_text()
    assert "/mlpipe/kernel/kernel.json" in (step_dir / "kernel.log").read_text()
    # the sockets' directory goes with the container
    assert set(scratch_of(os.getpid())) - set(before) == set()
    assert containers(client, runner.run_id) == []


NETWORK = """\
import os, socket
interfaces = sorted(os.listdir('/sys/class/net'))
try:
    socket.create_connection(('pypi.org', 443), timeout=5).close()
    reached = True
except OSError:
    reached = False
"""


def test_network_none_cannot_reach_the_network(notebook_dir, client):
    write_notebook(notebook_dir / "p.ipynb", [
        "%%step offline --network none --outputs off\n" + NETWORK + "off = [interfaces, reached]",
        "%%step online --network bridge --outputs on\n" + NETWORK + "on = [interfaces, reached]",
        "%%step default --outputs dflt\n" + NETWORK + "dflt = [interfaces, reached]"])

    runner, state = run_pipeline(notebook_dir, read_cells(notebook_dir / "p.ipynb"))
    assert state == "succeeded"
    load = runner.artifacts.load
    assert load(runner.outputs["offline"]["off"]) == [["lo"], False]
    assert "lo" in load(runner.outputs["online"]["on"])[0]
    assert len(load(runner.outputs["online"]["on"])[0]) > 1  # a real interface too
    assert len(load(runner.outputs["default"]["dflt"])[0]) > 1
    # the run's --network is the default of steps that set none
    runner, state = run_pipeline(notebook_dir, read_cells(notebook_dir / "p.ipynb"),
                                 executor_options={"network": "none"}, no_cache=True)
    assert state == "succeeded"
    assert runner.artifacts.load(runner.outputs["default"]["dflt"]) == [["lo"], False]
    assert len(runner.artifacts.load(runner.outputs["online"]["on"])[0]) > 1
    # and on the command line
    result, run = cli_run(notebook_dir, "p.ipynb", "--network", "none", "--only", "default",
                          "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert runner.artifacts.load(run["steps"][0]["outputs"]["dflt"]) == [["lo"], False]


def read_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]


# -- cancellation and leftovers ----------------------------------------------------------------
SLOW = "%%step slow\nimport time\nfor i in range(120):\n    print('tick', i, flush=True)\n" \
       "    time.sleep(0.5)"


def wait_for_container(client, label: str, timeout: float = 120):
    return wait_for(lambda: client.containers.list(filters={"label": label,
                                                            "status": "running"}),
                    f"a running container with label {label}", timeout, every=0.2)[0]


def test_cancel_mid_run_leaves_no_container(notebook_dir, client):
    notebook = write_notebook(notebook_dir / "p.ipynb", [SLOW])
    runner = PipelineRunner(read_pipeline(notebook), notebook=str(notebook),
                            base_dir=notebook_dir, options=RunOptions(executor="docker"))
    result = {}
    thread = threading.Thread(target=lambda: result.update(state=runner.run()))
    thread.start()
    wait_for_container(client, f"mlpipe.run={runner.run_id}")
    started = time.monotonic()
    runner.cancel()
    thread.join(60)
    assert not thread.is_alive() and result["state"] == "cancelled"
    assert time.monotonic() - started < 15
    assert containers(client, runner.run_id) == []
    assert stored_run(runner)["steps"][0]["state"] == "cancelled"


def test_timeout_stops_the_container(notebook_dir, client):
    write_notebook(notebook_dir / "p.ipynb", [SLOW.replace("%%step slow", "%%step slow "
                                                           "--timeout 3")])
    started = time.monotonic()
    result, run = cli_run(notebook_dir, "p.ipynb")
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    step = run["steps"][0]
    assert step["state"] == "failed"
    assert step["error"]["message"] == "step `slow` timed out after 3 s"
    assert containers(client, run["id"]) == []
    log = (notebook_dir / ".mlpipe" / "runs" / run["id"] / "slow" / "log.txt").read_text()
    assert "tick 1" in log  # it really ran until stopped


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_mlpipe_run_removes_its_containers(notebook_dir, client, sig):
    write_notebook(notebook_dir / "p.ipynb", [SLOW])
    proc = subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "docker"],
                            cwd=notebook_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        container = wait_for_container(client, "mlpipe.step=slow")
        run_id = container.labels["mlpipe.run"]
        assert container.labels["mlpipe.owner"].split(":")[1] == str(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert f"interrupted: run {run_id} cancelled" in err
    assert containers(client, run_id) == []


def test_gc_removes_containers_of_a_killed_runner_only(notebook_dir, client):
    write_notebook(notebook_dir / "p.ipynb", [SLOW])
    proc = subprocess.Popen([MLPIPE, "run", "p.ipynb", "--executor", "docker"],
                            cwd=notebook_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    container = wait_for_container(client, "mlpipe.step=slow")
    run_id = container.labels["mlpipe.run"]
    proc.kill()  # SIGKILL: the runner cannot clean up
    proc.wait()
    assert len(containers(client, run_id)) == 1  # left behind (running, or stopping by itself)
    # the kernel's socket directory is left behind too (an older one of a dead process that had
    # the same pid would be garbage as well)
    sockets = scratch_of(proc.pid, "k")
    assert sockets
    # a container whose runner is alive (this test process) is not garbage
    live = client.containers.run(
        container.image.id, ["sleep", "60"], detach=True,
        labels={"mlpipe.run": "test-live-run", "mlpipe.step": "x",
                "mlpipe.owner": owner_label()})
    try:
        dry = run_cli("gc", "--dry-run", cwd=notebook_dir)
        assert f"would remove {container.name} (run {run_id}, step slow" in dry.stdout
        assert len(containers(client, run_id)) == 1
        result = run_cli("gc", cwd=notebook_dir)
        assert result.returncode == 0, result.stderr
        # the container may have stopped by itself meanwhile (its kernel lost its runner):
        # either way it is garbage, removed, and said so with the state it was in
        assert re.search(rf"removed {container.name} \(run {run_id}, step slow, "
                         r"(running|exited): its runner is gone\)", result.stdout), result.stdout
        assert containers(client, run_id) == []
        assert [c.id for c in containers(client, "test-live-run")] == [live.id]
        for path in sockets:
            assert f"removed {path} (scratch of a runner that is gone)" in result.stdout
            assert not path.exists()
    finally:
        live.remove(force=True)
    shown = json.loads(run_cli("show", run_id, "--json", cwd=notebook_dir).stdout)
    assert shown["state"] == "failed" and shown["reason"] == "interrupted"


def test_gc_images_lists_runtime_images_of_other_mlpipe_files_only(notebook_dir, client):
    import io

    from mlpipe_jupyter.executors.images import (
        PACKAGE_LABEL,
        RUNTIME_LABEL,
        package_digest,
        remove_stale_images,
    )

    made = []
    for tag, package in (("test-stale", "from-another-version"), ("test-current",
                                                                   package_digest())):
        image, _ = client.images.build(
            fileobj=io.BytesIO(f"FROM {BASE_IMAGE}\nLABEL test={tag}\n".encode()),
            tag=f"mlpipe-runtime:{tag}", rm=True,
            labels={RUNTIME_LABEL: "x", PACKAGE_LABEL: package})
        made.append(image)
    try:
        # dry runs only: other sessions on this engine may hold stale images of their own
        stale = remove_stale_images(client, dry_run=True)
        assert "mlpipe-runtime:test-stale" in stale
        assert "mlpipe-runtime:test-current" not in stale
        result = run_cli("gc", "--images", "--dry-run", cwd=notebook_dir)
        assert result.returncode == 0, result.stderr
        assert "would remove image mlpipe-runtime:test-stale (built from other mlpipe files)" \
            in result.stdout
    finally:
        for image in made:
            client.images.remove(image.id, force=True)


# -- without a daemon --------------------------------------------------------------------------
def test_without_a_daemon_docker_says_how_and_the_default_is_local(notebook_dir):
    write_notebook(notebook_dir / "p.ipynb", ["%%step a --outputs x\nx = 1"])
    env = {"DOCKER_HOST": f"unix://{notebook_dir}/no-daemon.sock"}
    result = run_cli("run", "p.ipynb", "--executor", "docker", cwd=notebook_dir, env=env)
    assert result.returncode == 1  # an executor that cannot run (ExecutorError): nothing ran
    assert result.stderr.strip() == (
        f"error: no Docker daemon answers at unix://{notebook_dir}/no-daemon.sock: start it "
        "(`sudo dockerd &` or `systemctl start docker`) or use `--executor local`")
    result, run = cli_run(notebook_dir, "p.ipynb", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert run["executor"] == "local"
    assert result.stderr.count(f"note: no Docker daemon answers at unix://{notebook_dir}/"
                               "no-daemon.sock; steps run locally, without containers") == 1
