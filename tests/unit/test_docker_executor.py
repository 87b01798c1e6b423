"""The pure parts of the docker executor: container arguments, the kernel's view of the
inputs and outputs, log line splitting, progress lines, users, owners, and error texts."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from mlpipe_jupyter.errors import UsageError
from mlpipe_jupyter.executors import executors, kernelbridge
from mlpipe_jupyter.executors.base import StepJob
from mlpipe_jupyter.executors.containers import (
    container_kwargs,
    io_paths,
    owner_alive,
    owner_label,
    parse_user,
)
from mlpipe_jupyter.executors.docker import DockerExecutor, daemon_down
from mlpipe_jupyter.model.spec import StepSpec
from mlpipe_jupyter.step.main import Output, parse_progress, progress_line


def job(tmp_path: Path, **step) -> StepJob:
    spec = StepSpec(name="fit", code="pass", **step)
    d = tmp_path / "runs" / "r1" / "fit"
    return StepJob(
        run_id="r1", step=spec, attempt=2, notebook=d / "step.ipynb", output=d / "output.ipynb",
        workdir=d / "work", outputs_dir=d / "out",
        inputs={"train": tmp_path / "artifacts" / "aa", "test": tmp_path / "artifacts" / "bb"},
        files={"data/raw.csv": tmp_path / "artifacts" / "cc" / "data" / "data" / "raw.csv"},
        parameters={}, log=print, progress=lambda d, t: None,
        env={"MLPIPE_RUN_ID": "r1", "KEY": "v"})


def kwargs(tmp_path, run_network=None, **step):
    return container_kwargs(job(tmp_path, **step), image="sha256:img", user=(1234, 99),
                            network=run_network, owner="host:1:2")


def test_docker_is_registered():
    assert executors.get("docker") is DockerExecutor
    assert "docker" in executors.names()


def test_mounts_inputs_read_only_outputs_read_write(tmp_path):
    kw = kwargs(tmp_path)
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in kw["mounts"]}
    d = tmp_path / "runs" / "r1" / "fit"
    assert mounts == {
        "/mlpipe/work": (str(d / "work"), False),
        "/mlpipe/outputs": (str(d / "out"), False),
        # stepmain writes its record in a box of the step's run directory, never in it
        "/mlpipe/step": (str(d / "box"), False),
        "/mlpipe/notebook.ipynb": (str(d / "step.ipynb"), True),
        "/mlpipe/inputs/train": (str(tmp_path / "artifacts" / "aa"), True),
        "/mlpipe/inputs/test": (str(tmp_path / "artifacts" / "bb"), True),
        "/mlpipe/work/data/raw.csv": (str(tmp_path / "artifacts/cc/data/data/raw.csv"), True),
    }
    assert all(m["Type"] == "bind" for m in kw["mounts"])
    assert not any("docker.sock" in m["Source"] for m in kw["mounts"])


def test_container_runs_stepmain_as_the_user_with_labels(tmp_path):
    kw = kwargs(tmp_path)
    assert kw["image"] == "sha256:img"
    assert kw["command"] == ["/opt/mlpipe/bin/python", "-m", "mlpipe_jupyter.step.main",
                             "/mlpipe/step/container.json"]
    assert kw["user"] == "1234:99"
    assert kw["working_dir"] == "/mlpipe/work"
    assert kw["labels"] == {"mlpipe.run": "r1", "mlpipe.step": "fit", "mlpipe.owner": "host:1:2",
                            "mlpipe.attempt": "2"}
    assert kw["name"] == "mlpipe-r1-fit-2"
    assert kw["environment"]["HOME"] == "/tmp"  # writable for any uid
    assert kw["environment"]["KEY"] == "v" and kw["environment"]["MLPIPE_RUN_ID"] == "r1"
    assert kw["init"] is True
    assert kw["network_mode"] == "bridge"
    for key in ("nano_cpus", "mem_limit", "memswap_limit", "device_requests"):
        assert key not in kw  # no limits unless the step asks


def test_resource_limits_from_the_step(tmp_path):
    kw = kwargs(tmp_path, cpus=1.5, memory="512m", gpus=2)
    assert kw["nano_cpus"] == 1_500_000_000
    assert kw["mem_limit"] == kw["memswap_limit"] == 512 * 1024**2
    assert kw["device_requests"] == [{"count": 2, "capabilities": [["gpu"]]}]


@pytest.mark.parametrize(("step_net", "run_net", "expected"), [
    (None, None, "bridge"), (None, "none", "none"), ("bridge", "none", "bridge"),
    ("none", "bridge", "none"), ("none", None, "none")])
def test_network_step_wins_over_run(tmp_path, step_net, run_net, expected):
    assert kwargs(tmp_path, run_network=run_net, network=step_net)["network_mode"] == expected


def test_notebook_outside_the_step_dir_is_mounted_read_only(tmp_path):
    j = job(tmp_path)
    j.notebook = tmp_path / "elsewhere" / "nb.ipynb"
    kw = container_kwargs(j, image="i", user=(0, 0), network=None, owner="o")
    assert {"Type": "bind", "Source": str(j.notebook), "Target": "/mlpipe/notebook.ipynb",
            "ReadOnly": True} in kw["mounts"]


def test_io_parameter_uses_container_paths(tmp_path):
    assert io_paths(job(tmp_path)) == {
        "inputs": {"train": "/mlpipe/inputs/train", "test": "/mlpipe/inputs/test"},
        "outputs_dir": "/mlpipe/outputs"}


def test_parse_user():
    assert parse_user() == (os.getuid(), os.getgid())
    assert parse_user("1234:1234") == (1234, 1234)
    assert parse_user("1234") == (1234, os.getgid())
    assert parse_user((5, 6)) == (5, 6)
    with pytest.raises(UsageError, match="user"):
        parse_user("alice")


def test_progress_lines_round_trip():
    assert parse_progress(progress_line(3, 7)) == (3, 7)
    assert parse_progress("progress 3/7") is None
    assert parse_progress("##mlpipe:progress x/7") is None


def test_progress_starts_on_a_fresh_line():
    class Sink(list):
        def write(self, text):
            self.append(text)

        def flush(self):
            pass

    sink = Sink()
    out = Output(sink)
    out.write("no newline")
    out.progress(1, 2)
    out.write("done\n")
    out.progress(2, 2)
    assert "".join(sink).splitlines() == ["no newline", progress_line(1, 2), "done",
                                          progress_line(2, 2)]


def test_owner_label_of_this_process_is_alive():
    label = owner_label()
    assert label.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert owner_alive(label) is True
    host, pid, start, boot = label.split(":")
    assert boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert owner_alive(f"{host}:{pid}:{int(start) + 1}") is False  # pid reused by another
    assert owner_alive(f"{host}:{pid}:{start}:another-boot") is False  # before a reboot
    assert owner_alive(f"{host}:{pid}:{start}") is True  # a label from before boot ids
    assert owner_alive(f"{host}:999999999:") is False
    assert owner_alive("another-host:1:2") is None
    assert owner_alive(None) is None


def test_daemon_down_says_how_to_start_and_the_alternative(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere.sock")
    text = str(daemon_down())
    assert text.startswith("no Docker daemon answers at unix:///nowhere.sock: start it")
    assert "`--executor local`" in text and "\n" not in text


def test_run_level_network_option_of_the_magic_and_the_cli():
    from click.testing import CliRunner
    from IPython.core import magic_arguments as ma

    from mlpipe_jupyter.ui.cli import main
    from mlpipe_jupyter.ui.magics import _run_args

    assert ma.parse_argstring(_run_args, "--network none").network == "none"
    assert ma.parse_argstring(_run_args, "").network is None
    help_text = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--network [none|bridge]" in help_text


def test_a_kernel_container_runs_the_kernel_on_sockets_in_a_mounted_directory(tmp_path):
    kw = container_kwargs(job(tmp_path), image="sha256:img", user=(1234, 99), network=None,
                          owner="host:1:2", kernel=(tmp_path / "k", "/mlpipe/kernel/kernel.json"))
    assert kw["command"] == ["/opt/mlpipe/bin/python", "-m", "mlpipe_jupyter.kernels.stepkernel",
                             "-f", "/mlpipe/kernel/kernel.json",
                             "--HistoryManager.hist_file=:memory:"]
    mounts = {m["Target"]: (m["Source"], m["ReadOnly"]) for m in kw["mounts"]}
    assert mounts["/mlpipe/kernel"] == (str(tmp_path / "k"), False)
    assert "/mlpipe/notebook.ipynb" not in mounts  # papermill reads it in the runner
    assert kw["user"] == "1234:99" and kw["init"] is True


def test_kernel_files_give_each_side_its_own_socket_paths(tmp_path):
    files = kernelbridge.kernel_files((os.getuid(), os.getgid()))
    try:
        assert files.host_dir.stat().st_mode & 0o777 == 0o700  # the key and sockets are ours
        assert files.mount_dir == files.host_dir / "m"  # what the container gets
        inside = json.loads((files.mount_dir / "kernel.json").read_text())
        assert inside["transport"] == "ipc" and inside["ip"] == "/mlpipe/kernel/k"
        assert inside["key"] == files.key and len(files.key) == 64
        host = files.info(str(files.host_dir / "k"))
        # the longest socket path the runner connects to fits a unix socket's 107 bytes
        assert len(f"{host['ip']}-{max(kernelbridge.PORTS.values())}") < 107
        assert not files.ready()
        bound = []
        for port in kernelbridge.PORTS.values():
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(files.mount_dir / f"k-{port}"))
            bound.append(sock)
        assert files.ready()
        files.link_sockets()  # the runner connects to its own links to the kernel's sockets
        for port in kernelbridge.PORTS.values():
            assert (files.host_dir / f"k-{port}").samefile(files.mount_dir / f"k-{port}")
        # a container that swaps a socket for a symlink (to a host socket) is refused
        (files.mount_dir / "k-3").unlink()
        (files.mount_dir / "k-3").symlink_to("/var/run/docker.sock")
        with pytest.raises(RuntimeError, match="left /mlpipe/kernel/k-3, which is not its "
                                               "kernel's socket"):
            files.link_sockets()
        assert not (files.host_dir / "k-3").exists()
        for sock in bound:
            sock.close()
    finally:
        files.remove()
    assert not files.host_dir.exists()
    assert kernelbridge.usable("unix:///var/run/docker.sock")
    assert not kernelbridge.usable("tcp://10.0.0.2:2376")  # a remote daemon: stepmain


def test_where_papermill_runs_is_host_or_container(monkeypatch):
    monkeypatch.delenv("MLPIPE_DOCKER_PAPERMILL", raising=False)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert DockerExecutor().papermill_in == "host"
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.2:2376")
    assert DockerExecutor().papermill_in == "container"
    assert DockerExecutor(papermill="host").papermill_in == "host"
    with pytest.raises(UsageError, match="executor option papermill=vm: use one of host, "
                                         "container"):
        DockerExecutor(papermill="vm")
